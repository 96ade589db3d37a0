//! Session rows: create, rotate in place, revoke, list.
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement, TransactionTrait,
};

use token_authority_domain::audit::AuditKind;
use token_authority_domain::ports::{Inserted, RevokeOutcome, RevokeSession, SessionCap};
use token_authority_domain::rotation::Rotation;
use token_authority_domain::session::Session;

use super::audit::{self, EventRow};
use super::db_clock::POSTGRES_NOW_MILLIS;
use super::entities::session::{self, Column};
use super::{Backend, Store, StoreResult};

use session::Model as SessionRow;

impl Store {
    /// Makes room in `tx` for one more session of `row`'s subject: with a
    /// `cap`, revokes the subject's least recently used live sessions so
    /// that at most `cap.max - 1` remain, if they are evictable. Does not
    /// insert `row` (see `insert_sessions`). Concurrent issues for one
    /// subject are serialised (PostgreSQL: an advisory lock on the subject,
    /// held until `tx` ends; SQLite: a single writer).
    pub(crate) async fn make_room(
        &self,
        tx: &DatabaseTransaction,
        row: &Session,
        cap: Option<SessionCap>,
    ) -> StoreResult<Inserted> {
        let mut evicted = Vec::new();
        if let Some(cap) = cap {
            if self.backend() == Backend::Postgres {
                tx.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                    [format!("{}\n{}", row.tenant_id, row.subject).into()],
                ))
                .await?;
            }
            // Least recently used first; reads the partial index of live
            // sessions only, however many revoked ones the subject has.
            let live: Vec<(String, i64)> = live_sessions_of(&row.tenant_id, &row.subject, cap.now)
                .select_only()
                .column(Column::Id)
                .column(Column::CreatedAt)
                .order_by_asc(Column::LastUsedAt)
                .order_by_asc(Column::Id)
                .into_tuple()
                .all(tx)
                .await?;
            let excess = (live.len() as u64 + 1).saturating_sub(cap.max) as usize;
            if excess > 0 {
                let (victims, young): (Vec<_>, Vec<_>) = live
                    .iter()
                    .partition(|(_, created)| *created < cap.evictable_before);
                if victims.len() < excess {
                    let oldest_young = young.iter().map(|(_, created)| *created).min();
                    let evictable_at = oldest_young.unwrap_or(cap.evictable_before)
                        + (cap.now - cap.evictable_before)
                        + 1;
                    return Ok(Inserted::AtCapacity { evictable_at });
                }
                let victims = victims[..excess].iter().map(|(id, _)| id.clone());
                let reason = format!("evicted: more than {} sessions", cap.max);
                let seq = self.revoking(tx).await?;
                let rows = session::Entity::update_many()
                    .col_expr(Column::RevokedAt, Expr::value(cap.now))
                    .col_expr(Column::RevokeReason, Expr::value(reason.as_str()))
                    .col_expr(Column::RevocationSeq, seq)
                    .filter(Column::Id.is_in(victims))
                    .filter(Column::RevokedAt.is_null())
                    .exec_with_returning(tx)
                    .await?;
                let events = rows.iter().map(|victim| EventRow {
                    at: cap.now,
                    kind: AuditKind::Evicted,
                    tenant_id: &row.tenant_id,
                    subject: &row.subject,
                    session_id: Some(&victim.id),
                    detail: Some(format!("{reason}; for session {}", row.id)),
                });
                audit::record_all(tx, events).await?;
                evicted = rows.into_iter().map(|r| r.id).collect();
            }
        }
        Ok(Inserted::Stored { evicted })
    }

    /// Inserts new sessions, each with its `issued` audit event (by the
    /// caller named beside it), in two statements however many there are.
    pub(crate) async fn insert_sessions(
        &self,
        tx: &DatabaseTransaction,
        new: &[&Session],
    ) -> StoreResult<()> {
        if new.is_empty() {
            return Ok(());
        }
        let events = new.iter().map(|row| EventRow {
            at: row.created_at,
            kind: AuditKind::Issued,
            tenant_id: &row.tenant_id,
            subject: &row.subject,
            session_id: Some(&row.id),
            detail: Some(format!("by {}", row.client_id)),
        });
        audit::record_all(tx, events).await?;
        let rows = new
            .iter()
            .map(|row| SessionRow::from(*row).into_active_model());
        session::Entity::insert_many(rows)
            .exec_without_returning(tx)
            .await?;
        Ok(())
    }

    pub async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        Ok(session::Entity::find_by_id(id.to_owned())
            .one(self.conn())
            .await?
            .map(Session::from))
    }

    /// A session row with the database's "now" read with it (see
    /// `db_clock`): what its `rotated_at` is compared with.
    pub async fn session_and_db_now(
        &self,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<(Session, i64)>> {
        if self.backend() == Backend::Sqlite {
            return Ok(self.session(id).await?.map(|row| (row, now)));
        }
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT *, {POSTGRES_NOW_MILLIS} AS db_now FROM sessions WHERE id = $1"),
            [id.into()],
        );
        let Some(result) = self.conn().query_one_raw(statement).await? else {
            return Ok(None);
        };
        let row = SessionRow::from_query_result(&result, "")?;
        Ok(Some((row.into(), result.try_get::<i64>("", "db_now")?)))
    }

    /// Revokes one session, unless `RevokeSession::refusal` says otherwise.
    pub async fn revoke_session(&self, target: RevokeSession<'_>) -> StoreResult<RevokeOutcome> {
        let RevokeSession {
            id,
            now,
            kind,
            reason,
            ..
        } = target;
        let tx = self.conn().begin().await?;
        let Some(row) = session::Entity::find_by_id(id.to_owned()).one(&tx).await? else {
            return Ok(RevokeOutcome::NotFound);
        };
        if let Some(refusal) = target.refusal(&row.tenant_id) {
            return Ok(refusal);
        }
        let seq = self.revoking(&tx).await?;
        let changed = session::Entity::update_many()
            .col_expr(Column::RevokedAt, Expr::value(now))
            .col_expr(Column::RevokeReason, Expr::value(reason))
            .col_expr(Column::RevocationSeq, seq)
            .filter(Column::Id.eq(id))
            .filter(Column::RevokedAt.is_null())
            .exec(&tx)
            .await?
            .rows_affected;
        if changed == 0 {
            return Ok(RevokeOutcome::AlreadyRevoked);
        }
        let event = EventRow {
            at: now,
            kind,
            tenant_id: &row.tenant_id,
            subject: &row.subject,
            session_id: Some(&row.id),
            detail: Some(reason.to_owned()),
        };
        audit::record(&tx, event).await?;
        tx.commit().await?;
        Ok(RevokeOutcome::Revoked)
    }

    /// Revokes every unrevoked, unexpired session of a subject. Returns the
    /// ids this call revoked (not those another request revoked meanwhile).
    /// Works in chunks so that no statement exceeds the backends' limits on
    /// bound parameters, however many sessions the subject has.
    pub async fn revoke_subject(
        &self,
        tenant_id: &str,
        subject: &str,
        now: i64,
        reason: &str,
    ) -> StoreResult<Vec<String>> {
        const CHUNK: usize = 500;
        let tx = self.conn().begin().await?;
        let candidates: Vec<String> = live_sessions_of(tenant_id, subject, now)
            .select_only()
            .column(Column::Id)
            .into_tuple()
            .all(&tx)
            .await?;
        let mut revoked = Vec::with_capacity(candidates.len());
        let seq = self.revoking(&tx).await?;
        for chunk in candidates.chunks(CHUNK) {
            let rows = session::Entity::update_many()
                .col_expr(Column::RevokedAt, Expr::value(now))
                .col_expr(Column::RevokeReason, Expr::value(reason))
                .col_expr(Column::RevocationSeq, seq.clone())
                .filter(Column::Id.is_in(chunk.iter().cloned()))
                .filter(Column::RevokedAt.is_null())
                .exec_with_returning(&tx)
                .await?;
            let events = rows.iter().map(|row| EventRow {
                at: now,
                kind: AuditKind::Revoked,
                tenant_id,
                subject,
                session_id: Some(&row.id),
                detail: Some(reason.to_owned()),
            });
            audit::record_all(&tx, events).await?;
            revoked.extend(rows.into_iter().map(|row| row.id));
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Live sessions of a subject in id (= creation) order, after `after`.
    pub async fn live_sessions(
        &self,
        tenant_id: &str,
        subject: &str,
        now: i64,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<Session>> {
        let mut query = live_sessions_of(tenant_id, subject, now);
        if let Some(after) = after {
            query = query.filter(Column::Id.gt(after));
        }
        Ok(query
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?
            .into_iter()
            .map(Session::from)
            .collect())
    }

    /// Every session row, live or not.
    pub async fn session_rows(&self) -> StoreResult<u64> {
        Ok(session::Entity::find().count(self.conn()).await?)
    }

    /// Bytes the sessions table and its indexes occupy, where the backend
    /// can tell (SQLite builds without the dbstat table cannot).
    pub async fn sessions_table_bytes(&self) -> StoreResult<Option<u64>> {
        let sql = match self.backend() {
            Backend::Postgres => "SELECT pg_total_relation_size('sessions')::BIGINT AS bytes",
            Backend::Sqlite => {
                "SELECT CAST(SUM(pgsize) AS BIGINT) AS bytes FROM dbstat \
                 WHERE name = 'sessions' OR tbl_name = 'sessions'"
            }
        };
        let statement = Statement::from_string(self.conn().get_database_backend(), sql);
        match self.conn().query_one_raw(statement).await {
            Ok(Some(row)) => Ok(row
                .try_get::<Option<i64>>("", "bytes")?
                .and_then(|b| u64::try_from(b).ok())),
            Ok(None) => Ok(None),
            Err(_) if self.backend() == Backend::Sqlite => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes of the whole database (SQLite: the main file's pages; PostgreSQL:
    /// `pg_database_size`), audit events and free pages included.
    pub async fn database_bytes(&self) -> StoreResult<Option<u64>> {
        let sql = match self.backend() {
            Backend::Postgres => "SELECT pg_database_size(current_database())::BIGINT AS bytes",
            Backend::Sqlite => {
                "SELECT page_count * page_size AS bytes \
                 FROM pragma_page_count(), pragma_page_size()"
            }
        };
        let statement = Statement::from_string(self.conn().get_database_backend(), sql);
        Ok(self
            .conn()
            .query_one_raw(statement)
            .await?
            .map(|row| row.try_get::<i64>("", "bytes"))
            .transpose()?
            .and_then(|b| u64::try_from(b).ok()))
    }
}

pub(crate) fn live_sessions_of(
    tenant_id: &str,
    subject: &str,
    now: i64,
) -> sea_orm::Select<session::Entity> {
    session::Entity::find()
        .filter(Column::TenantId.eq(tenant_id))
        .filter(Column::Subject.eq(subject))
        .filter(live_at(now))
}

/// `Session::is_live(now)` as a condition on rows.
fn live_at(now: i64) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(Column::RevokedAt.is_null())
        .add(Column::ExpiresAt.gt(now))
        .add(Column::IdleExpiresAt.gt(now))
}

impl Store {
    /// The rotation as one conditional update: `Rotation::apply` where
    /// `Rotation::applies_to` holds.
    pub(crate) fn rotation_update(&self, r: &Rotation<'_>) -> sea_orm::UpdateMany<session::Entity> {
        let mut update = session::Entity::update_many()
            .col_expr(Column::Generation, Expr::value(r.from_generation + 1))
            .col_expr(Column::TokenDigest, Expr::value(r.to_digest.to_vec()))
            .col_expr(Column::PreviousDigest, Expr::value(r.from_digest.to_vec()))
            .col_expr(Column::RotatedAt, self.db_now(r.now))
            .col_expr(Column::LastUsedAt, Expr::value(r.now))
            .col_expr(Column::IdleExpiresAt, Expr::value(r.idle_expires_at));
        for (column, value) in [
            (Column::DeviceName, r.device_name),
            (Column::UserAgent, r.user_agent),
            (Column::Ip, r.ip),
        ] {
            if let Some(value) = value {
                update = update.col_expr(column, Expr::value(value));
            }
        }
        if let Some(tenants) = r.tenants {
            update = update.filter(Column::TenantId.is_in(tenants.iter().cloned()));
        }
        update
            .filter(Column::Id.eq(r.session_id))
            .filter(Column::Generation.eq(r.from_generation))
            .filter(Column::TokenDigest.eq(r.from_digest.to_vec()))
            .filter(live_at(r.now))
            .filter(binding_allows(r))
    }
}

/// `Rotation::binding_refusal(row).is_none()` as a condition on rows.
fn binding_allows(r: &Rotation<'_>) -> sea_orm::Condition {
    let mut presenter = Condition::any().add(Column::RefreshX5tS256.is_null());
    if let Some(thumbprint) = r.presenter {
        presenter = presenter.add(Column::RefreshX5tS256.eq(thumbprint));
    }
    let mut condition = Condition::all().add(presenter);
    match r.requested_binding {
        Some(requested) => {
            condition = condition.add(
                Condition::any()
                    .add(Column::CnfX5tS256.is_null())
                    .add(Column::CnfX5tS256.eq(requested)),
            );
        }
        None if !r.binding_required.is_empty() => {
            condition = condition.add(
                Condition::any()
                    .add(Column::CnfX5tS256.is_not_null())
                    .add(Column::TenantId.is_not_in(r.binding_required.iter().cloned())),
            );
        }
        None => {}
    }
    condition
}
