//! Keeps the PostgreSQL pool on the server that `target_session_attrs`
//! asks for, among the hosts of a multi-host `database.url`, through a
//! failover and without a restart.
//!
//! - At start, hosts are tried in turn (libpq's order); the first that
//!   matches becomes the pool's server (`Pool::set_connect_options`).
//! - A watcher keeps one connection of its own to that server and asks its
//!   role every `PROBE_EVERY`. When that connection breaks or the server is
//!   no longer a primary (demoted), it tries the hosts in turn again and
//!   switches the pool to the one that matches. Connections the pool opens
//!   meanwhile retry (sqlx re-reads the connect options on every attempt)
//!   until the acquire timeout: callers see "unavailable", never a wrong
//!   server.
//! - Every new pool connection is checked (`after_connect`): one that
//!   reached a server of the wrong role is refused. Pooled connections
//!   opened before a switch are dropped when next acquired
//!   (`before_acquire`), so none stays on a demoted primary.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnectionMetadata;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sea_orm::sqlx::{self, ConnectOptions, Connection};
use tokio::sync::Notify;

use crate::pg_hosts::{PgHost, PgHosts, TargetSessionAttrs};

/// How often the watcher checks the current server: the longest a replica
/// keeps trying a dead or demoted primary after a failover has completed.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How long after a switch revocation-feed reads also cover everything the
/// new server committed since the switch (see `cursor_floor`). Replicas
/// read every `state_sync_interval` and sidecars reconnect within a few
/// heartbeats: all hold a cursor of the new server well within this.
const REWIND_FOR: Duration = Duration::from_secs(60);

pub(crate) struct PrimaryFinder {
    hosts: Vec<(PgHost, PgConnectOptions)>,
    target: TargetSessionAttrs,
    current: AtomicUsize,
    /// When the pool last changed server (ms since `epoch`): pooled
    /// connections opened before are dropped.
    switched_at_ms: AtomicU64,
    epoch: Instant,
    wake: Notify,
    connect_timeout: Duration,
    /// The new server's snapshot xmin when the pool switched to it, and when.
    switched_floor: std::sync::Mutex<Option<(Instant, i64)>>,
}

impl PrimaryFinder {
    /// `hosts` with their sqlx options, already tuned as the pool wants them.
    pub(crate) fn new(
        parsed: &PgHosts,
        hosts: Vec<(PgHost, PgConnectOptions)>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            hosts,
            target: parsed.target(),
            current: AtomicUsize::new(0),
            switched_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            wake: Notify::new(),
            connect_timeout,
            switched_floor: std::sync::Mutex::new(None),
        }
    }

    /// The first host that accepts a connection and has the wanted role,
    /// with that connection (the watcher keeps it as its probe).
    pub(crate) async fn find(&self) -> Option<(usize, PgConnection)> {
        for (i, (host, options)) in self.hosts.iter().enumerate() {
            let connected = tokio::time::timeout(self.connect_timeout, options.connect()).await;
            let mut conn = match connected {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::debug!(host = %host.label, error = %e, "database host unreachable");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(host = %host.label, "database host: connect timed out");
                    continue;
                }
            };
            match self.has_role(&mut conn).await {
                Ok(true) => return Some((i, conn)),
                Ok(false) => {
                    tracing::debug!(host = %host.label, target = %self.target, "database host has another role")
                }
                Err(e) => {
                    tracing::debug!(host = %host.label, error = %e, "database host: role check failed")
                }
            }
            let _ = conn.close_hard().await;
        }
        None
    }

    pub(crate) fn labels(&self) -> Vec<&str> {
        self.hosts.iter().map(|(h, _)| h.label.as_str()).collect()
    }

    pub(crate) fn target(&self) -> TargetSessionAttrs {
        self.target
    }

    pub(crate) fn current_host(&self) -> &PgHost {
        &self.hosts[self.current.load(Ordering::Relaxed)].0
    }

    pub(crate) fn current_options(&self) -> PgConnectOptions {
        self.hosts[self.current.load(Ordering::Relaxed)].1.clone()
    }

    pub(crate) fn set_current(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }

    /// Whether the server behind `conn` is one `target_session_attrs`
    /// accepts. Always asks, even for `any`: the answer doubles as a ping.
    async fn has_role(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        let (in_recovery, read_only): (bool, String) = tokio::time::timeout(
            self.connect_timeout,
            sqlx::query_as("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
                .fetch_one(&mut *conn),
        )
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "database role check timed out",
            ))
        })??;
        Ok(match self.target {
            TargetSessionAttrs::Any => true,
            TargetSessionAttrs::Primary => !in_recovery,
            TargetSessionAttrs::ReadWrite => !in_recovery && read_only == "off",
        })
    }

    /// `after_connect`: refuses a new pool connection to a server of the
    /// wrong role (sqlx then retries it until the acquire timeout) and has
    /// the watcher look for the right one at once.
    pub(crate) async fn check_new(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.has_role(conn).await? {
            return Ok(());
        }
        self.wake.notify_one();
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!(
                "database host {} is not a {} server (a standby or read-only)",
                self.current_host().label,
                self.target
            ),
        )))
    }

    /// `before_acquire`: keeps a pooled connection only if it was opened
    /// after the last switch.
    pub(crate) fn keep(&self, meta: &PoolConnectionMetadata) -> bool {
        let opened = self.epoch.elapsed().saturating_sub(meta.age);
        opened.as_millis() as u64 >= self.switched_at_ms.load(Ordering::Relaxed)
    }

    /// Shortly after a switch, the position from which the feed must read
    /// whatever cursor it is given. A cursor read from the old primary can
    /// be above transaction ids the new one hands out again (ids of the old
    /// primary's last transactions whose WAL never reached the standby, such
    /// as aborted ones, which commit does not wait for); every transaction
    /// the new server runs after the switch has an id at or above this floor.
    pub(crate) fn cursor_floor(&self) -> Option<i64> {
        let floor = *self
            .switched_floor
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        floor
            .filter(|(at, _)| at.elapsed() < REWIND_FOR)
            .map(|(_, xmin)| xmin)
    }

    async fn record_floor(&self, conn: &mut PgConnection) {
        let xmin: Result<i64, _> =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::BIGINT")
                .fetch_one(&mut *conn)
                .await;
        let floor = match xmin {
            Ok(xmin) => xmin,
            Err(e) => {
                // Without the new server's position, rewind to the start:
                // a full re-read for `REWIND_FOR` rather than a missed row.
                tracing::warn!(error = %e, "could not read the new database server's position; re-reading the revocation feed from the start");
                0
            }
        };
        *self
            .switched_floor
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), floor));
    }

    fn drop_pooled_connections(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.switched_at_ms.store(now, Ordering::Relaxed);
    }

    /// Runs until the pool is closed; see the module comment.
    pub(crate) async fn watch(self: Arc<Self>, pool: PgPool, mut probe: Option<PgConnection>) {
        while !pool.is_closed() {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = self.wake.notified() => {}
            }
            let healthy = match probe.as_mut() {
                Some(conn) => self.has_role(conn).await,
                None => Err(sqlx::Error::PoolClosed),
            };
            match healthy {
                Ok(true) => continue,
                Ok(false) => {
                    tracing::warn!(host = %self.current_host().label, target = %self.target, "the database server changed role (demoted?); looking for another");
                    self.drop_pooled_connections();
                }
                Err(e) if probe.is_some() => {
                    tracing::warn!(host = %self.current_host().label, error = %e, "lost the database server; looking for the primary");
                }
                Err(_) => {}
            }
            if let Some(old) = probe.take() {
                let _ = old.close_hard().await;
            }
            let Some((index, mut conn)) = self.find().await else {
                continue;
            };
            // Also when it is the same host again: behind one name, a
            // failover looks like a restart.
            self.record_floor(&mut conn).await;
            if index != self.current.load(Ordering::Relaxed) {
                self.set_current(index);
                pool.set_connect_options(self.current_options());
                self.drop_pooled_connections();
                tracing::warn!(host = %self.current_host().label, target = %self.target, "switched the database pool to a new server");
            }
            probe = Some(conn);
        }
    }
}
