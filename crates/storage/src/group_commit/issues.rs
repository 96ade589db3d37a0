//! The issues of a batch, in one transaction on either backend: each makes
//! room under its subject's cap in turn, and the new sessions and their
//! audit rows are then inserted together, two statements for the batch.
//! A subject that comes back later in the same batch first flushes what is
//! pending, so that its cap counts the sessions issued before it.
use std::collections::HashSet;

use sea_orm::DatabaseTransaction;

use token_authority_domain::ports::Inserted;

use super::IssueJob;
use crate::{Store, StoreResult};

pub(super) async fn issue_all(
    store: &Store,
    tx: &DatabaseTransaction,
    jobs: &[IssueJob],
) -> StoreResult<Vec<Inserted>> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut pending: Vec<&_> = Vec::new();
    let mut subjects = HashSet::new();
    for job in jobs {
        let subject = (job.session.tenant_id.as_str(), job.session.subject.as_str());
        if !subjects.insert(subject) {
            store.insert_sessions(tx, &pending).await?;
            pending.clear();
            subjects.clear();
            subjects.insert(subject);
        }
        let outcome = store.make_room(tx, &job.session, job.cap).await?;
        if matches!(outcome, Inserted::Stored { .. }) {
            pending.push(&job.session);
        }
        outcomes.push(outcome);
    }
    store.insert_sessions(tx, &pending).await?;
    Ok(outcomes)
}
