//! Append-only audit trail of what happened to sessions.
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use token_authority_domain::audit::{AuditEvent, AuditKind};

use super::entities::audit_event;
use super::{Store, StoreResult};

pub use super::entities::audit_event::Model as StoredAuditEvent;

/// An audit row about to be written, borrowing what it can.
#[derive(Debug, Clone)]
pub(crate) struct EventRow<'a> {
    pub at: i64,
    pub kind: AuditKind,
    pub tenant_id: &'a str,
    pub subject: &'a str,
    pub session_id: Option<&'a str>,
    pub detail: Option<String>,
}

pub(crate) async fn record(conn: &impl ConnectionTrait, event: EventRow<'_>) -> StoreResult<()> {
    record_all(conn, std::iter::once(event)).await
}

pub(crate) async fn record_all<'a>(
    conn: &impl ConnectionTrait,
    events: impl IntoIterator<Item = EventRow<'a>>,
) -> StoreResult<()> {
    let rows: Vec<_> = events
        .into_iter()
        .map(|e| audit_event::ActiveModel {
            id: NotSet,
            occurred_at: Set(e.at),
            kind: Set(e.kind.as_str().to_owned()),
            tenant_id: Set(e.tenant_id.to_owned()),
            subject: Set(e.subject.to_owned()),
            session_id: Set(e.session_id.map(str::to_owned)),
            detail: Set(e.detail),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    audit_event::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

impl Store {
    pub async fn record_audit_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
        record_all(
            self.conn(),
            events.iter().map(|e| EventRow {
                at: e.at,
                kind: e.kind,
                tenant_id: &e.tenant_id,
                subject: &e.subject,
                session_id: e.session_id.as_deref(),
                detail: e.detail.clone(),
            }),
        )
        .await
    }

    /// Audit events of one kind, oldest first (for tests and tools).
    pub async fn audit_events_of_kind(
        &self,
        kind: AuditKind,
    ) -> StoreResult<Vec<StoredAuditEvent>> {
        Ok(audit_event::Entity::find()
            .filter(audit_event::Column::Kind.eq(kind.as_str()))
            .order_by_asc(audit_event::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// A session's audit trail, oldest first.
    pub async fn audit_trail(&self, session_id: &str) -> StoreResult<Vec<StoredAuditEvent>> {
        Ok(audit_event::Entity::find()
            .filter(audit_event::Column::SessionId.eq(session_id))
            .order_by_asc(audit_event::Column::Id)
            .all(self.conn())
            .await?)
    }
}
