//! Batched deletion of state nobody can use any more. Each batch is its own
//! short statement (`DELETE … WHERE id IN (SELECT id … LIMIT n)`), so no
//! transaction holds locks for long and a crash mid-purge leaves only rows
//! that the next purge deletes.
use sea_orm::sea_query::{Condition, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    TransactionTrait,
};

use super::entities::{audit_event, session, signing_key};
use super::{Backend, Store, StoreResult};

/// What a purge step deletes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurgeKind {
    /// Sessions past their absolute expiry.
    SessionsExpired,
    /// Sessions not refreshed within the idle lifetime.
    SessionsIdle,
    /// Revoked sessions older than the revocation retention.
    SessionsRevoked,
    /// Audit events older than their retention.
    AuditEvents,
    /// Retired signing keys whose every token has expired.
    SigningKeysRetired,
}

impl PurgeKind {
    pub const ALL: [PurgeKind; 5] = [
        PurgeKind::SessionsExpired,
        PurgeKind::SessionsIdle,
        PurgeKind::SessionsRevoked,
        PurgeKind::AuditEvents,
        PurgeKind::SigningKeysRetired,
    ];

    pub fn table(self) -> &'static str {
        match self {
            PurgeKind::SessionsExpired | PurgeKind::SessionsIdle | PurgeKind::SessionsRevoked => {
                "sessions"
            }
            PurgeKind::AuditEvents => "audit_events",
            PurgeKind::SigningKeysRetired => "signing_keys",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            PurgeKind::SessionsExpired => "expired",
            PurgeKind::SessionsIdle => "idle",
            PurgeKind::SessionsRevoked => "revoked",
            PurgeKind::AuditEvents => "retention",
            PurgeKind::SigningKeysRetired => "retired",
        }
    }
}

/// Cut-off times (ms since the epoch) for one purge.
#[derive(Debug, Clone, Copy)]
pub struct PurgeCutoffs {
    pub now: i64,
    /// Revoked sessions revoked at or before this go.
    pub revoked_before: i64,
    /// Audit events that occurred before this go.
    pub audit_before: i64,
    /// Keys retired at or before this go.
    pub key_retired_before: i64,
}

/// PostgreSQL advisory lock key held by the replica that purges ("TApurge!").
const PURGE_LOCK: i64 = 0x5441_7075_7267_6521;

/// Proof that this process may purge; on PostgreSQL it holds an advisory
/// lock until dropped or released.
pub struct PurgeLock(Option<DatabaseTransaction>);

impl PurgeLock {
    pub async fn release(self) -> StoreResult<()> {
        if let Some(tx) = self.0 {
            tx.commit().await?;
        }
        Ok(())
    }
}

impl Store {
    /// Takes the purge lock if no other replica holds it. SQLite has a single
    /// writer process, so there it always succeeds.
    pub async fn try_purge_lock(&self) -> StoreResult<Option<PurgeLock>> {
        if self.backend() != Backend::Postgres {
            return Ok(Some(PurgeLock(None)));
        }
        let tx = self.conn().begin().await?;
        let row = tx
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT pg_try_advisory_xact_lock({PURGE_LOCK}) AS locked"),
            ))
            .await?;
        let locked = row.map(|r| r.try_get::<bool>("", "locked")).transpose()?;
        Ok((locked == Some(true)).then_some(PurgeLock(Some(tx))))
    }

    /// Deletes at most `batch` rows of `kind`; returns how many.
    pub async fn purge_batch(
        &self,
        kind: PurgeKind,
        cutoffs: &PurgeCutoffs,
        batch: u64,
    ) -> StoreResult<u64> {
        let limit = batch;
        let deleted = match kind {
            PurgeKind::SessionsExpired | PurgeKind::SessionsIdle | PurgeKind::SessionsRevoked => {
                let ids = Query::select()
                    .column(session::Column::Id)
                    .from(session::Entity)
                    .cond_where(condition(kind, cutoffs))
                    .limit(limit)
                    .to_owned();
                session::Entity::delete_many()
                    .filter(session::Column::Id.in_subquery(ids))
                    .exec(self.conn())
                    .await?
            }
            PurgeKind::AuditEvents => {
                let ids = Query::select()
                    .column(audit_event::Column::Id)
                    .from(audit_event::Entity)
                    .cond_where(condition(kind, cutoffs))
                    .limit(limit)
                    .to_owned();
                audit_event::Entity::delete_many()
                    .filter(audit_event::Column::Id.in_subquery(ids))
                    .exec(self.conn())
                    .await?
            }
            PurgeKind::SigningKeysRetired => {
                signing_key::Entity::delete_many()
                    .filter(condition(kind, cutoffs))
                    .exec(self.conn())
                    .await?
            }
        };
        Ok(deleted.rows_affected)
    }

    /// How many rows of `kind` are waiting to be purged.
    pub async fn purge_backlog(&self, kind: PurgeKind, cutoffs: &PurgeCutoffs) -> StoreResult<u64> {
        let cond = condition(kind, cutoffs);
        Ok(match kind.table() {
            "sessions" => {
                session::Entity::find()
                    .filter(cond)
                    .count(self.conn())
                    .await?
            }
            "audit_events" => {
                audit_event::Entity::find()
                    .filter(cond)
                    .count(self.conn())
                    .await?
            }
            _ => {
                signing_key::Entity::find()
                    .filter(cond)
                    .count(self.conn())
                    .await?
            }
        })
    }

    /// Sessions that are neither revoked nor expired.
    pub async fn live_session_count(&self, now: i64) -> StoreResult<u64> {
        Ok(session::Entity::find()
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .filter(session::Column::IdleExpiresAt.gt(now))
            .count(self.conn())
            .await?)
    }
}

fn condition(kind: PurgeKind, c: &PurgeCutoffs) -> Condition {
    use session::Column as S;
    match kind {
        PurgeKind::SessionsExpired => Condition::all()
            .add(S::RevokedAt.is_null())
            .add(S::ExpiresAt.lte(c.now)),
        PurgeKind::SessionsIdle => Condition::all()
            .add(S::RevokedAt.is_null())
            .add(S::ExpiresAt.gt(c.now))
            .add(S::IdleExpiresAt.lte(c.now)),
        PurgeKind::SessionsRevoked => Condition::all().add(S::RevokedAt.lte(c.revoked_before)),
        PurgeKind::AuditEvents => {
            Condition::all().add(audit_event::Column::OccurredAt.lt(c.audit_before))
        }
        PurgeKind::SigningKeysRetired => {
            Condition::all().add(signing_key::Column::RetiredAt.lte(c.key_retired_before))
        }
    }
}
