//! SQLite: the whole batch in one transaction, so one commit (and, with
//! `synchronous=FULL`, one fsync) however many rotations and issues it
//! holds. Each rotation is still its own conditional UPDATE, applied in
//! queue order; SQLite runs them in-process, so the commit is the cost.
use sea_orm::{DatabaseTransaction, TransactionTrait};

use token_authority_domain::audit::AuditKind;
use token_authority_domain::ports::Inserted;
use token_authority_domain::session::Session;

use super::{answer, issue_reply, issues, rotate_reply, IssueJob, RotateJob};
use crate::audit::{self, EventRow};
use crate::{Store, StoreResult};

pub(super) async fn commit(store: &Store, rotations: Vec<RotateJob>, issues: Vec<IssueJob>) {
    if rotations.is_empty() && issues.is_empty() {
        return;
    }
    match apply(store, &rotations, &issues).await {
        Ok((rotated, inserted)) => {
            answer(rotations, Ok(rotated), rotate_reply);
            answer(issues, Ok(inserted), issue_reply);
        }
        Err(e) => {
            answer(rotations, Err(e.clone()), rotate_reply);
            answer(issues, Err(e), issue_reply);
        }
    }
}

async fn apply(
    store: &Store,
    rotations: &[RotateJob],
    issues: &[IssueJob],
) -> StoreResult<(Vec<Option<Session>>, Vec<Inserted>)> {
    let tx = store.conn().begin().await?;
    let rotated = rotate_all(store, &tx, rotations).await?;
    let inserted = issues::issue_all(store, &tx, issues).await?;
    tx.commit().await?;
    Ok((rotated, inserted))
}

async fn rotate_all(
    store: &Store,
    tx: &DatabaseTransaction,
    rotations: &[RotateJob],
) -> StoreResult<Vec<Option<Session>>> {
    let mut rotated = Vec::with_capacity(rotations.len());
    for job in rotations {
        let row = store
            .rotation_update(&job.rotation())
            .exec_with_returning(tx)
            .await?
            .pop();
        rotated.push(row.map(Session::from));
    }
    let events = rotations
        .iter()
        .zip(&rotated)
        .filter_map(|(job, row)| row.as_ref().filter(|_| job.audit).map(|row| (job, row)))
        .map(|(job, row)| EventRow {
            at: job.now,
            kind: AuditKind::Refreshed,
            tenant_id: &row.tenant_id,
            subject: &row.subject,
            session_id: Some(&row.id),
            detail: Some(format!("generation {}", row.generation)),
        });
    audit::record_all(tx, events).await?;
    Ok(rotated)
}
