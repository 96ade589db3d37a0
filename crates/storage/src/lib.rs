//! Persistence: the only crate that talks to the database. SQLite by
//! default, PostgreSQL in production; the same SeaORM code serves both.
//! Implements the domain's ports (`token_authority_domain::ports`) in
//! `ports.rs`, mapping its entities to the domain's types.
pub mod audit;
mod audit_reads;
mod db_clock;
pub mod entities;
mod group_commit;
pub mod keys;
mod pg_hosts;
pub mod plans;
mod ports;
mod primary_finder;
pub mod purge;
pub mod revocations;
pub mod rewrap;
pub mod secrets;
pub mod sessions;

use group_commit::GroupCommit;
pub use group_commit::GroupCommitStats;
use migration::{Migrator, MigratorTrait};
pub use pg_hosts::PgHostsError;
use sea_orm::sqlx;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, RuntimeErr,
    TransactionTrait,
};

use std::sync::Arc;
use std::time::Duration;

use token_authority_verify::StorageError;

/// A database failure. `is_unavailable` separates "try again later" (the
/// database is down, busy or too slow) from bugs and bad data. Cheap to
/// clone: one failed group commit answers every caller in the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(Arc<DbErr>);

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        Self(Arc::new(e))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e))).into()
    }
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        match self.0.as_ref() {
            DbErr::ConnectionAcquire(_) => true,
            DbErr::Conn(e) | DbErr::Exec(e) | DbErr::Query(e) => runtime_unavailable(e),
            _ => false,
        }
    }
}

fn runtime_unavailable(e: &RuntimeErr) -> bool {
    let RuntimeErr::SqlxError(e) = e else {
        return false;
    };
    match e.as_ref() {
        // Protocol: a stream that breaks off mid-message or is not
        // PostgreSQL at all (a load balancer or proxy with no backend
        // answers the SSLRequest with garbage or nothing).
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Primary result code (low byte of an extended one):
                // 5 BUSY, 6 LOCKED, 10 IOERR, 14 CANTOPEN.
                code.parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 14))
            } else {
                // PostgreSQL SQLSTATE: class 08 connection exception, 57P0x
                // shutdown / cannot connect now, 57014 statement timeout, 53
                // insufficient resources, 40001/40P01 serialization failure
                // or deadlock, 25006 read-only transaction (after a
                // failover), 55P03 lock not available.
                code.starts_with("08")
                    || code.starts_with("57P0")
                    || code.starts_with("53")
                    || matches!(&*code, "57014" | "40001" | "40P01" | "25006" | "55P03")
            }
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            StorageError::unavailable(e)
        } else {
            StorageError::failed(e)
        }
    }
}

/// How to reach the database and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// `sqlite://path.db` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    /// Pool size; by default 1 on SQLite (one writer at a time), 16 on
    /// PostgreSQL.
    pub max_connections: Option<u32>,
    pub acquire_timeout: Duration,
    pub connect_timeout: Duration,
    /// PostgreSQL `statement_timeout`; on SQLite, how long a statement
    /// waits for the write lock.
    pub statement_timeout: Duration,
    /// SQLite `synchronous=FULL` (a commit is on disk before it returns)
    /// rather than `NORMAL`.
    pub sqlite_full_sync: bool,
}

/// PostgreSQL advisory lock key held while migrating ("TAmigrat").
const MIGRATION_LOCK: i64 = 0x5441_6d69_6772_6174;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the database; cheap to clone. Rotations and issues go through
/// its writers (see `group_commit`).
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    group_commit: Option<Arc<GroupCommit>>,
    primary: Option<Arc<primary_finder::PrimaryFinder>>,
}

impl Store {
    pub async fn connect(config: &ConnectSettings) -> StoreResult<Self> {
        let backend = if config.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbErr::Conn(RuntimeErr::Internal(
                "unsupported database.url: it must start with sqlite:// or postgres://".into(),
            ))
            .into());
        };
        let max_connections = config.max_connections.unwrap_or(match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 16,
        });
        let statement_timeout = config.statement_timeout;
        let synchronous = if config.sqlite_full_sync {
            sqlx::sqlite::SqliteSynchronous::Full
        } else {
            sqlx::sqlite::SqliteSynchronous::Normal
        };
        let hosts = match backend {
            Backend::Postgres => pg_hosts::parse(&config.url).map_err(url_error)?,
            Backend::Sqlite => None,
        };
        let finder = match &hosts {
            Some(hosts) => Some(Arc::new(primary_finder_for(hosts, config)?)),
            None => None,
        };
        // With several hosts, the pool starts on the first that has the
        // wanted role; `primary_finder` keeps it there.
        let (url, probe) = match &finder {
            Some(finder) => {
                let (index, probe) = finder.find().await.ok_or_else(|| no_server(finder))?;
                finder.set_current(index);
                (finder.current_host().url.clone(), Some(probe))
            }
            None => (config.url.clone(), None),
        };
        let mut options = ConnectOptions::new(url);
        options
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout)
            .connect_timeout(config.connect_timeout)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(move |opts| {
                // WAL lets readers run beside the writer; see
                // `ConnectSettings::sqlite_full_sync` for the durability choice.
                opts.create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(synchronous)
                    .busy_timeout(statement_timeout)
            })
            .map_sqlx_postgres_opts(move |opts| tune_postgres(opts, statement_timeout));
        if let Some(finder) = &finder {
            let check = finder.clone();
            let keep = finder.clone();
            options
                .map_sqlx_postgres_pool_opts(move |pool| {
                    let check = check.clone();
                    pool.after_connect(move |conn, _| {
                        let check = check.clone();
                        Box::pin(async move { check.check_new(conn).await })
                    })
                })
                .map_sqlx_postgres_before_acquire(move |_, meta| {
                    let kept = keep.keep(&meta);
                    Box::pin(async move { Ok(kept) })
                });
        }
        if backend == Backend::Sqlite {
            prepare_sqlite_file(&config.url)?;
        }
        let db = Database::connect(options).await?;
        if let Some(finder) = &finder {
            let pool = db.get_postgres_connection_pool().clone();
            tokio::spawn(finder.clone().watch(pool, probe));
        }
        let direct = Self {
            db,
            backend,
            group_commit: None,
            primary: finder,
        };
        // SQLite has one connection, so one writer; on PostgreSQL a few,
        // leaving most of the pool to reads and other writes.
        let writers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => (max_connections as usize / 4).clamp(1, 8),
        };
        Ok(Self {
            group_commit: Some(Arc::new(GroupCommit::start(direct.clone(), writers))),
            ..direct
        })
    }

    /// Applies pending migrations. On PostgreSQL, replicas starting together
    /// would race (`CREATE … IF NOT EXISTS` is not safe against a concurrent
    /// create), so one at a time holds an advisory lock, taken in a
    /// transaction on one pooled connection while the migrator uses others.
    pub async fn migrate(&self) -> StoreResult<()> {
        if self.backend != Backend::Postgres {
            Migrator::up(&self.db, None).await?;
            return Ok(());
        }
        let lock = self.db.begin().await?;
        lock.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        let migrated = Migrator::up(&self.db, None).await;
        lock.commit().await?;
        migrated?;
        Ok(())
    }

    /// The migrations this build has that the database lacks, by name;
    /// writes nothing (not even the migrations table).
    pub async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        Ok(Migrator::get_pending_migrations_read_only(&self.db)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connections the pool holds, and of those the idle ones.
    pub fn pool_connections(&self) -> Option<(u32, u32)> {
        match self.backend {
            Backend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                Some((
                    pool.size(),
                    u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                ))
            }
            Backend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                Some((
                    pool.size(),
                    u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                ))
            }
        }
    }

    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn close(self) -> StoreResult<()> {
        self.db.close().await?;
        Ok(())
    }
}

/// Notices (`… already exists, skipping` from every start's migration
/// check) are not news: only warnings reach the log.
fn tune_postgres(
    opts: sqlx::postgres::PgConnectOptions,
    statement_timeout: Duration,
) -> sqlx::postgres::PgConnectOptions {
    opts.application_name("token-authority").options([
        (
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        ),
        ("client_min_messages", "warning".to_owned()),
    ])
}

/// One tuned sqlx option set per host of a multi-host URL.
fn primary_finder_for(
    hosts: &pg_hosts::PgHosts,
    config: &ConnectSettings,
) -> StoreResult<primary_finder::PrimaryFinder> {
    use sqlx::ConnectOptions as _;
    let options = hosts
        .hosts
        .iter()
        .map(|host| {
            let parsed = host
                .url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .map_err(|e| {
                    DbErr::Conn(RuntimeErr::Internal(format!(
                        "database.url: host {}: {e}",
                        host.label
                    )))
                })?;
            let tuned = tune_postgres(parsed, config.statement_timeout).disable_statement_logging();
            Ok((host.clone(), tuned))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(primary_finder::PrimaryFinder::new(
        hosts,
        options,
        config.connect_timeout,
    ))
}

fn url_error(e: PgHostsError) -> StoreError {
    DbErr::Conn(RuntimeErr::Internal(e.to_string())).into()
}

/// No host of the list has the wanted role: unavailable (an I/O error), as
/// a single server that is down is.
fn no_server(finder: &primary_finder::PrimaryFinder) -> StoreError {
    let hosts = finder.labels().join(",");
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        format!(
            "no database host of {hosts} accepts connections as target_session_attrs={}",
            finder.target()
        ),
    ))
    .into()
}

/// Checks what no retry can fix before connecting (the folder of the
/// database file must exist), and creates a missing database file readable
/// by its owner only: it holds device names, IP addresses and user agents.
/// SQLite gives its WAL and shared-memory files the same mode.
fn prepare_sqlite_file(url: &str) -> StoreResult<()> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    let path = std::path::Path::new(path);
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !folder.is_dir() {
        return Err(DbErr::Custom(format!(
            "database.url: the folder {} does not exist",
            folder.display()
        ))
        .into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(DbErr::Custom(format!(
                    "database.url: cannot create {}: {e}",
                    path.display()
                ))
                .into())
            }
        }
    }
    Ok(())
}
