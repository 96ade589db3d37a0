//! Batched deletion of state nobody can use any more. Each batch is its own
//! short statement, so no transaction holds locks for long and a crash
//! mid-purge leaves only rows that the next purge deletes.
//!
//! A batch deletes by the rows' physical address (PostgreSQL `ctid`, SQLite
//! `rowid`) picked by an index range of the purge condition:
//! `DELETE … WHERE ctid = ANY(ARRAY(SELECT ctid … LIMIT n))` is a TID scan,
//! with no join back through the primary key (which `WHERE id IN (SELECT
//! id …)` needs, and which PostgreSQL may plan as a hash join over the
//! whole table). A row updated between the select and the delete has a new
//! `ctid` by then, so the delete skips it rather than deleting a version
//! it did not check; SQLite has a single writer, so its `rowid` cannot
//! change under the statement.
//!
//! Idle sessions have no index on `idle_expires_at`: a refresh changes it,
//! and an index on it would make every refresh a non-HOT update on
//! PostgreSQL (see migration `m20261202_000004_hot_rotation`). Instead the
//! purge sweeps the primary key in windows of `IDLE_WINDOW × batch` ids,
//! deleting the idle ones in each (at most `batch`) and resuming after the
//! window. A batch thus reads a bounded id range, never the whole table, and
//! one purge reads each session once: at the purge's interval (a minute by
//! default) that is far less than the refreshes write. Ids are UUIDv7, so
//! the sweep goes from the oldest sessions to the newest.
use sea_orm::sea_query::{Condition, Expr, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    Statement, TransactionTrait,
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
    /// Keys retired or withdrawn at or before this go.
    pub key_retired_before: i64,
}

/// How many ids one batch of the idle sweep reads, per row it may delete.
const IDLE_WINDOW: u64 = 8;

/// Where the next batch of a kind starts: again from the condition's index,
/// or (the idle sweep) after an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeResume(Option<String>);

impl PurgeResume {
    fn again() -> Self {
        Self(None)
    }

    pub(crate) fn after_id(id: &str) -> Self {
        Self(Some(id.to_owned()))
    }

    fn after(resume: Option<&PurgeResume>) -> Option<&str> {
        resume.and_then(|r| r.0.as_deref())
    }
}

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeBatch {
    pub deleted: u64,
    /// Where the next batch goes on; `None` when this kind is done.
    pub resume: Option<PurgeResume>,
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

    /// Deletes at most `batch` rows of `kind`, going on from where the
    /// previous batch of this kind said (`resume`; `None` for the first).
    pub async fn purge_batch(
        &self,
        kind: PurgeKind,
        cutoffs: &PurgeCutoffs,
        batch: u64,
        resume: Option<&PurgeResume>,
    ) -> StoreResult<PurgeBatch> {
        match kind {
            PurgeKind::SessionsIdle => self.purge_idle_window(cutoffs, batch, resume).await,
            PurgeKind::SigningKeysRetired => {
                // A handful of rows: no batching.
                let deleted = signing_key::Entity::delete_many()
                    .filter(condition(kind, cutoffs))
                    .exec(self.conn())
                    .await?
                    .rows_affected;
                Ok(PurgeBatch {
                    deleted,
                    resume: None,
                })
            }
            PurgeKind::SessionsExpired | PurgeKind::SessionsRevoked | PurgeKind::AuditEvents => {
                let statement = self.purge_statement(kind, cutoffs, batch, None, None);
                let deleted = self.conn().execute_raw(statement).await?.rows_affected();
                Ok(PurgeBatch {
                    deleted,
                    resume: (deleted >= batch).then(PurgeResume::again),
                })
            }
        }
    }

    /// One window of the idle sweep (see the module comment).
    async fn purge_idle_window(
        &self,
        cutoffs: &PurgeCutoffs,
        batch: u64,
        resume: Option<&PurgeResume>,
    ) -> StoreResult<PurgeBatch> {
        let upper = self
            .conn()
            .query_one_raw(self.idle_window_statement(resume, batch))
            .await?
            .map(|row| row.try_get::<String>("", "id"))
            .transpose()?;
        let statement = self.purge_statement(
            PurgeKind::SessionsIdle,
            cutoffs,
            batch,
            resume,
            upper.as_deref(),
        );
        let deleted: Vec<String> = self
            .conn()
            .query_all_raw(statement)
            .await?
            .iter()
            .map(|row| row.try_get::<String>("", "id"))
            .collect::<Result<_, _>>()?;
        let count = deleted.len() as u64;
        // A full batch may have left idle rows in the window: go on after
        // the last one deleted. Otherwise the window is done.
        let next = if count >= batch {
            deleted.into_iter().max()
        } else {
            upper
        };
        Ok(PurgeBatch {
            deleted: count,
            resume: next.map(|id| PurgeResume(Some(id))),
        })
    }

    /// The idle sweep's window: the id `IDLE_WINDOW × batch` ids after the
    /// resume point, or no row when fewer are left (the last window).
    pub(crate) fn idle_window_statement(
        &self,
        resume: Option<&PurgeResume>,
        batch: u64,
    ) -> Statement {
        let window = batch.saturating_mul(IDLE_WINDOW).max(1);
        let mut select = Query::select();
        select
            .column(session::Column::Id)
            .from(session::Entity)
            .order_by(session::Column::Id, sea_orm::Order::Asc)
            .limit(1)
            .offset(window - 1);
        if let Some(after) = PurgeResume::after(resume) {
            select.and_where(session::Column::Id.gt(after));
        }
        self.build(&select)
    }

    /// The DELETE of one batch of `kind`. For the idle sweep, `resume` and
    /// `upper` bound the id window (`upper` unset: to the end).
    pub(crate) fn purge_statement(
        &self,
        kind: PurgeKind,
        cutoffs: &PurgeCutoffs,
        batch: u64,
        resume: Option<&PurgeResume>,
        upper: Option<&str>,
    ) -> Statement {
        let mut cond = condition(kind, cutoffs);
        let table = kind.table();
        if kind == PurgeKind::SessionsIdle {
            if let Some(after) = PurgeResume::after(resume) {
                cond = cond.add(session::Column::Id.gt(after));
            }
            if let Some(upper) = upper {
                cond = cond.add(session::Column::Id.lte(upper));
            }
            // By id, in id order: the window is a primary-key range, and
            // the ids deleted tell where a full batch stopped.
            let mut select = Query::select();
            select
                .column(session::Column::Id)
                .from(session::Entity)
                .cond_where(cond)
                .order_by(session::Column::Id, sea_orm::Order::Asc)
                .limit(batch);
            let (sql, values) = self.build_parts(&select);
            return Statement::from_sql_and_values(
                self.conn().get_database_backend(),
                format!("DELETE FROM {table} WHERE id IN ({sql}) RETURNING id"),
                values,
            );
        }
        let address = match self.backend() {
            Backend::Postgres => "ctid",
            Backend::Sqlite => "rowid",
        };
        let mut select = Query::select();
        select
            .expr(Expr::cust(address))
            .cond_where(cond)
            .limit(batch);
        match kind {
            PurgeKind::AuditEvents => select.from(audit_event::Entity),
            PurgeKind::SigningKeysRetired => select.from(signing_key::Entity),
            _ => select.from(session::Entity),
        };
        let (sql, values) = self.build_parts(&select);
        let sql = match self.backend() {
            Backend::Postgres => format!("DELETE FROM {table} WHERE ctid = ANY(ARRAY({sql}))"),
            Backend::Sqlite => format!("DELETE FROM {table} WHERE rowid IN ({sql})"),
        };
        Statement::from_sql_and_values(self.conn().get_database_backend(), sql, values)
    }

    fn build_parts(&self, select: &SelectStatement) -> (String, sea_orm::sea_query::Values) {
        match self.backend() {
            Backend::Postgres => select.build(sea_orm::sea_query::PostgresQueryBuilder),
            Backend::Sqlite => select.build(sea_orm::sea_query::SqliteQueryBuilder),
        }
    }

    fn build(&self, select: &SelectStatement) -> Statement {
        let (sql, values) = self.build_parts(select);
        Statement::from_sql_and_values(self.conn().get_database_backend(), sql, values)
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
        // A withdrawn key's row stays as long as a retired one's: until
        // every token it can have signed has expired.
        PurgeKind::SigningKeysRetired => Condition::any()
            .add(signing_key::Column::RetiredAt.lte(c.key_retired_before))
            .add(signing_key::Column::WithdrawnAt.lte(c.key_retired_before)),
    }
}
