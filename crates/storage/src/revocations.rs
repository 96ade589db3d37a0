//! Where other replicas learn of revocations: every revoked session row
//! carries a database-assigned position (`revocation_seq`), and a reader
//! resumes from a cursor that no revocation still to commit can be below.
//! No replica's clock is involved.
//!
//! - PostgreSQL: the position is the revoking transaction's id, and the
//!   cursor is the xmin of the reading statement's snapshot (every
//!   transaction below it has finished, so whatever commits later has an
//!   id at or above it). A reader re-reads a few recent rows; it never
//!   misses one, however long a revoking transaction took to commit.
//!   After a failover (`primary_finder`), reads rewind for a while to the
//!   new primary's position at the switch: ids the old primary handed out
//!   last may be handed out again (see `PrimaryFinder::cursor_floor`).
//! - SQLite: writers are serialised, so a counter row incremented inside
//!   each revoking transaction orders revocations as they commit.
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use token_authority_domain::ports::{RevocationPage, RevocationsFrom};

use super::{Backend, Store, StoreResult};

impl Store {
    /// For a transaction (`conn`) about to revoke sessions: tells listening
    /// replicas when it commits, and returns the value its revoked rows
    /// store in `revocation_seq`.
    pub(crate) async fn revoking(&self, conn: &impl ConnectionTrait) -> StoreResult<SimpleExpr> {
        self.notify_state_changed(conn).await?;
        match self.backend() {
            Backend::Postgres => Ok(Expr::cust("pg_current_xact_id()::text::BIGINT")),
            Backend::Sqlite => {
                let row = conn
                    .query_one_raw(Statement::from_string(
                        DbBackend::Sqlite,
                        "UPDATE revocation_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq",
                    ))
                    .await?
                    .ok_or_else(|| {
                        sea_orm::DbErr::RecordNotFound("revocation_counter row".into())
                    })?;
                Ok(Expr::value(row.try_get::<i64>("", "seq")?))
            }
        }
    }

    /// Sessions revoked since `from`, with the cursor to read on from.
    pub async fn revocations(&self, from: RevocationsFrom) -> StoreResult<RevocationPage> {
        let rows = self
            .conn()
            .query_all_raw(self.revocations_statement(from))
            .await?;
        let mut page = RevocationPage::default();
        for row in rows {
            page.cursor = row.try_get::<i64>("", "next")?;
            if let Some(id) = row.try_get::<Option<String>>("", "id")? {
                page.session_ids.push(id);
            }
        }
        Ok(page)
    }

    /// The feed's one statement: the rows and the cursor come from one
    /// snapshot.
    pub(crate) fn revocations_statement(&self, from: RevocationsFrom) -> Statement {
        let next = match self.backend() {
            Backend::Postgres => "pg_snapshot_xmin(pg_current_snapshot())::text::BIGINT",
            Backend::Sqlite => "(SELECT seq + 1 FROM revocation_counter WHERE id = 1)",
        };
        let param = match self.backend() {
            Backend::Postgres => "$1",
            Backend::Sqlite => "?",
        };
        let (condition, value): (String, Value) = match from {
            RevocationsFrom::Cursor(cursor) => {
                let floor = self.primary.as_ref().and_then(|p| p.cursor_floor());
                let cursor = floor.map_or(cursor, |floor| cursor.min(floor));
                (format!("s.revocation_seq >= {param}"), cursor.into())
            }
            RevocationsFrom::Since(since) => (format!("s.revoked_at >= {param}"), since.into()),
        };
        let sql = format!(
            "WITH c AS (SELECT {next} AS next) \
             SELECT c.next AS next, s.id AS id FROM c LEFT JOIN sessions s ON {condition}"
        );
        let backend = self.conn().get_database_backend();
        Statement::from_sql_and_values(backend, sql, [value])
    }
}

/// The PostgreSQL channel on which a commit that revoked sessions notifies
/// every replica, so that they read the cursor at once instead of at their
/// next poll. The poll stays as the safety net: a notification sent while a
/// listener was disconnected is lost.
const STATE_CHANNEL: &str = "token_authority_state";

/// Notifications that other replicas revoked something (PostgreSQL only).
pub struct StateChanges(sea_orm::sqlx::postgres::PgListener);

impl StateChanges {
    /// Waits for the next notification; an error means the connection was
    /// lost (the next call reconnects), and notifications may have been missed.
    pub async fn next(&mut self) -> StoreResult<()> {
        self.0
            .recv()
            .await
            .map(|_| ())
            .map_err(|e| sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())).into())
    }
}

impl Store {
    /// A listener for revocations committed by any replica, on its own
    /// connection; `None` on SQLite (one process: nothing to hear).
    pub async fn state_changes(&self) -> StoreResult<Option<StateChanges>> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let pool = self.conn().get_postgres_connection_pool();
        let to_db = |e: sea_orm::sqlx::Error| -> super::StoreError {
            sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())).into()
        };
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(to_db)?;
        listener.listen(STATE_CHANNEL).await.map_err(to_db)?;
        Ok(Some(StateChanges(listener)))
    }

    /// Tells listening replicas, when the transaction `conn` is in commits,
    /// that it revoked sessions (nothing on SQLite).
    pub(crate) async fn notify_state_changed(
        &self,
        conn: &impl ConnectionTrait,
    ) -> StoreResult<()> {
        if self.backend() == Backend::Postgres {
            conn.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_notify('{STATE_CHANNEL}', '')"),
            ))
            .await?;
        }
        Ok(())
    }
}
