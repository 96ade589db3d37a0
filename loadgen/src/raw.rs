//! The databases' own limits for Refresh and Issue, measured without our
//! storage code: the statements a Refresh and an Issue commit (schema of
//! crates/migration), sent with sqlx directly, one commit per request.
//!
//! - PostgreSQL Refresh: the conditional `UPDATE sessions … RETURNING *` and
//!   the `refreshed` audit `INSERT` in one statement (a data-modifying CTE),
//!   autocommit, one connection per stream.
//! - SQLite Refresh: the same UPDATE and audit INSERT in one transaction on
//!   one connection (SQLite has one writer; streams queue for it, as they
//!   queue for the server's pool of one), WAL, `synchronous=FULL`.
//! - Issue: a session row and its `issued` audit row per commit (one CTE
//!   statement on PostgreSQL, one transaction on SQLite).
//!
//! Each Refresh stream rotates its own session row, created through the real
//! Issue RPC. sqlx prepares each statement once per connection and reuses it.
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sea_orm::sqlx::{self, ConnectOptions, Connection, Row};
use tokio::sync::Mutex;

use crate::load::Step;
use crate::server::BoxError;
use crate::steps::{self, Client};
use token_authority::verify::clock::{Clock, SystemClock};

pub const PG_REFRESH: &str = "WITH rotated AS (\
UPDATE sessions SET generation = $1, token_digest = $2, previous_digest = $3, \
rotated_at = (EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::BIGINT, \
last_used_at = $4, idle_expires_at = $5 \
WHERE id = $6 AND generation = $7 AND token_digest = $8 \
AND revoked_at IS NULL AND expires_at > $9 AND idle_expires_at > $10 RETURNING *), \
audited AS (INSERT INTO audit_events (occurred_at, kind, tenant_id, subject, session_id, detail) \
SELECT last_used_at, 'refreshed', tenant_id, subject, id, 'generation ' || generation FROM rotated) \
SELECT * FROM rotated";

pub const SQLITE_REFRESH: &str = "UPDATE sessions SET generation = ?, token_digest = ?, \
previous_digest = ?, rotated_at = ?, last_used_at = ?, idle_expires_at = ? \
WHERE id = ? AND generation = ? AND token_digest = ? \
AND revoked_at IS NULL AND expires_at > ? AND idle_expires_at > ? RETURNING *";

pub const SQLITE_AUDIT: &str = "INSERT INTO audit_events \
(occurred_at, kind, tenant_id, subject, session_id, detail) VALUES (?, ?, ?, ?, ?, ?)";

pub const PG_ISSUE: &str = "WITH issued AS (INSERT INTO sessions \
(id, tenant_id, subject, audience, scopes, extra_claims, generation, token_digest, \
previous_digest, rotated_at, created_at, last_used_at, expires_at, idle_expires_at, \
revoked_at, revoke_reason, device_name, user_agent, ip) \
VALUES ($1, $2, $3, $4, $5, NULL, 0, $6, NULL, NULL, $7, $8, $9, $10, NULL, NULL, $11, $12, $13) \
RETURNING id, tenant_id, subject, created_at) \
INSERT INTO audit_events (occurred_at, kind, tenant_id, subject, session_id, detail) \
SELECT created_at, 'issued', tenant_id, subject, id, 'by loadgen' FROM issued";

pub const SQLITE_ISSUE: &str = "INSERT INTO sessions \
(id, tenant_id, subject, audience, scopes, extra_claims, generation, token_digest, \
previous_digest, rotated_at, created_at, last_used_at, expires_at, idle_expires_at, \
revoked_at, revoke_reason, device_name, user_agent, ip) \
VALUES (?, ?, ?, ?, ?, NULL, 0, ?, NULL, NULL, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)";

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    SystemClock.now_millis()
}

/// 32 fresh bytes, the size of a refresh-token digest.
fn digest() -> Vec<u8> {
    let mut d = uuid::Uuid::new_v4().as_bytes().to_vec();
    d.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    d
}

fn db_error(e: sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(_) => "DbError".into(),
        _ => "Unavailable".into(),
    }
}

/// A database opened the way the server opens it.
pub enum Raw {
    Postgres(String),
    /// The server's own file (another connection to it).
    Sqlite(String),
}

impl Raw {
    pub fn new(database_url: &str) -> Self {
        if database_url.starts_with("postgres") {
            Self::Postgres(database_url.to_owned())
        } else {
            Self::Sqlite(database_url.to_owned())
        }
    }

    async fn sqlite(url: &str) -> Result<SqliteConnection, BoxError> {
        let conn = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(conn)
    }

    /// SQLite's `PRAGMA synchronous` on the raw connection (2 = FULL).
    pub async fn sqlite_synchronous(&self) -> Result<Option<i64>, BoxError> {
        let Self::Sqlite(url) = self else {
            return Ok(None);
        };
        let mut conn = Self::sqlite(url).await?;
        let row = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut conn)
            .await?;
        let value = row.try_get::<i64, _>(0)?;
        conn.close().await?;
        Ok(Some(value))
    }

    /// One raw Refresh stream per session, each session issued through the
    /// real Issue RPC by `clients` in turn.
    pub async fn refresh_steps(
        &self,
        clients: &[Client],
        n: usize,
        tag: &str,
    ) -> Result<Vec<RawRefresh>, BoxError> {
        let shared_sqlite = match self {
            Self::Sqlite(url) => Some(Arc::new(Mutex::new(Self::sqlite(url).await?))),
            Self::Postgres(_) => None,
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut client = clients[i % clients.len()].clone();
            let pair = steps::issue(&mut client, format!("raw-{tag}-{i}")).await?;
            let conn = match (self, &shared_sqlite) {
                (Self::Postgres(url), _) => RawConn::Postgres(PgConnection::connect(url).await?),
                (_, Some(conn)) => RawConn::Sqlite(conn.clone()),
                (Self::Sqlite(_), None) => return Err("no SQLite connection".into()),
            };
            let mut step = RawRefresh {
                conn,
                session_id: pair.session_id,
                generation: 0,
                digest: Vec::new(),
            };
            step.load().await?;
            out.push(step);
        }
        Ok(out)
    }

    pub async fn issue_steps(&self, n: usize, tag: &str) -> Result<Vec<RawIssue>, BoxError> {
        let shared_sqlite = match self {
            Self::Sqlite(url) => Some(Arc::new(Mutex::new(Self::sqlite(url).await?))),
            Self::Postgres(_) => None,
        };
        let mut out = Vec::with_capacity(n);
        for worker in 0..n {
            let conn = match (self, &shared_sqlite) {
                (Self::Postgres(url), _) => RawConn::Postgres(PgConnection::connect(url).await?),
                (_, Some(conn)) => RawConn::Sqlite(conn.clone()),
                (Self::Sqlite(_), None) => return Err("no SQLite connection".into()),
            };
            out.push(RawIssue {
                conn,
                prefix: format!("raw-issue-{tag}-{worker}"),
                n: 0,
            });
        }
        Ok(out)
    }
}

pub enum RawConn {
    Postgres(PgConnection),
    Sqlite(Arc<Mutex<SqliteConnection>>),
}

/// One session rotated over and over with the very statements of Refresh.
pub struct RawRefresh {
    conn: RawConn,
    session_id: String,
    generation: i64,
    digest: Vec<u8>,
}

impl RawRefresh {
    async fn load(&mut self) -> Result<(), BoxError> {
        // Twice: the row types differ between backends.
        let (generation, digest) = match &mut self.conn {
            RawConn::Postgres(conn) => {
                let r = sqlx::query("SELECT generation, token_digest FROM sessions WHERE id = $1")
                    .bind(&self.session_id)
                    .fetch_one(&mut *conn)
                    .await?;
                (r.try_get::<i64, _>(0)?, r.try_get::<Vec<u8>, _>(1)?)
            }
            RawConn::Sqlite(conn) => {
                let mut conn = conn.lock().await;
                let r = sqlx::query("SELECT generation, token_digest FROM sessions WHERE id = ?")
                    .bind(&self.session_id)
                    .fetch_one(&mut *conn)
                    .await?;
                (r.try_get::<i64, _>(0)?, r.try_get::<Vec<u8>, _>(1)?)
            }
        };
        self.generation = generation;
        self.digest = digest;
        Ok(())
    }
}

impl Step for RawRefresh {
    async fn step(&mut self) -> Result<(), String> {
        let now = now_ms();
        let next = digest();
        let to_generation = self.generation + 1;
        let rotated = match &mut self.conn {
            RawConn::Postgres(conn) => sqlx::query(PG_REFRESH)
                .bind(to_generation)
                .bind(next.clone())
                .bind(self.digest.clone())
                .bind(now)
                .bind(now + DAY_MS)
                .bind(self.session_id.clone())
                .bind(self.generation)
                .bind(self.digest.clone())
                .bind(now)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_error)?
                .is_some(),
            RawConn::Sqlite(conn) => {
                let mut conn = conn.lock().await;
                let mut tx = conn.begin().await.map_err(db_error)?;
                let row = sqlx::query(SQLITE_REFRESH)
                    .bind(to_generation)
                    .bind(next.clone())
                    .bind(self.digest.clone())
                    .bind(now)
                    .bind(now)
                    .bind(now + DAY_MS)
                    .bind(self.session_id.clone())
                    .bind(self.generation)
                    .bind(self.digest.clone())
                    .bind(now)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
                let Some(row) = row else {
                    return Err("NotRotated".into());
                };
                let tenant: String = row.try_get("tenant_id").map_err(db_error)?;
                let subject: String = row.try_get("subject").map_err(db_error)?;
                sqlx::query(SQLITE_AUDIT)
                    .bind(now)
                    .bind("refreshed")
                    .bind(tenant)
                    .bind(subject)
                    .bind(self.session_id.clone())
                    .bind(format!("generation {to_generation}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                true
            }
        };
        if !rotated {
            return Err("NotRotated".into());
        }
        self.generation = to_generation;
        self.digest = next;
        Ok(())
    }
}

/// A session row and its audit row per commit.
pub struct RawIssue {
    conn: RawConn,
    prefix: String,
    n: u64,
}

impl Step for RawIssue {
    async fn step(&mut self) -> Result<(), String> {
        self.n += 1;
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let subject = format!("{}-{}", self.prefix, self.n);
        let scopes = "[\"read\",\"write\"]";
        match &mut self.conn {
            RawConn::Postgres(conn) => {
                sqlx::query(PG_ISSUE)
                    .bind(id)
                    .bind("load")
                    .bind(subject)
                    .bind("api")
                    .bind(scopes)
                    .bind(digest())
                    .bind(now)
                    .bind(now)
                    .bind(now + 30 * DAY_MS)
                    .bind(now + DAY_MS)
                    .bind("loadgen")
                    .bind("loadgen/0.1")
                    .bind("127.0.0.1")
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
            }
            RawConn::Sqlite(conn) => {
                let mut conn = conn.lock().await;
                let mut tx = conn.begin().await.map_err(db_error)?;
                sqlx::query(SQLITE_AUDIT)
                    .bind(now)
                    .bind("issued")
                    .bind("load")
                    .bind(subject.clone())
                    .bind(id.clone())
                    .bind("by loadgen")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                sqlx::query(SQLITE_ISSUE)
                    .bind(id)
                    .bind("load")
                    .bind(subject)
                    .bind("api")
                    .bind(scopes)
                    .bind(digest())
                    .bind(now)
                    .bind(now)
                    .bind(now + 30 * DAY_MS)
                    .bind(now + DAY_MS)
                    .bind("loadgen")
                    .bind("loadgen/0.1")
                    .bind("127.0.0.1")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
            }
        }
        Ok(())
    }
}
