//! Append-only audit trail of what happened to sessions.
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::entities::audit_event;
use super::{Store, StoreResult};

pub use super::entities::audit_event::Model as StoredAuditEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Issued,
    Refreshed,
    Revoked,
    ReuseDetected,
    /// Revoked to keep a subject within its maximum of live sessions.
    Evicted,
    /// A request refused for its caller's credentials or permissions.
    AccessDenied,
    KeyRotated,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Issued => "issued",
            AuditKind::Refreshed => "refreshed",
            AuditKind::Revoked => "revoked",
            AuditKind::ReuseDetected => "reuse_detected",
            AuditKind::Evicted => "evicted",
            AuditKind::AccessDenied => "access_denied",
            AuditKind::KeyRotated => "key_rotated",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub at: i64,
    pub kind: AuditKind,
    pub tenant_id: &'a str,
    pub subject: &'a str,
    pub session_id: Option<&'a str>,
    pub detail: Option<String>,
}

pub async fn record(conn: &impl ConnectionTrait, event: AuditEvent<'_>) -> StoreResult<()> {
    record_all(conn, std::iter::once(event)).await
}

pub async fn record_all<'a>(
    conn: &impl ConnectionTrait,
    events: impl IntoIterator<Item = AuditEvent<'a>>,
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

/// An audit event that owns its fields, for events queued before writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAuditEvent {
    pub at: i64,
    pub kind: AuditKind,
    pub tenant_id: String,
    pub subject: String,
    pub session_id: Option<String>,
    pub detail: Option<String>,
}

impl Store {
    pub async fn record_audit_events(&self, events: &[OwnedAuditEvent]) -> StoreResult<()> {
        record_all(
            self.conn(),
            events.iter().map(|e| AuditEvent {
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
