//! Deletes expired and revoked state in bounded batches, one replica at a
//! time, and reports what it did as metrics.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::PurgeConfig;
use crate::domain::{revocation_lifetime, REVOCATION_MARGIN};
use crate::storage::purge::{PurgeCutoffs, PurgeKind};
use crate::storage::{Store, StoreResult};
use crate::telemetry::Metrics;
use crate::verify::clock::{duration_millis, SharedClock};

/// Retention rules in the units the purge works in.
#[derive(Debug, Clone)]
pub struct PurgePolicy {
    pub batch_size: u64,
    pub batch_pause: Duration,
    pub revoked_retention: i64,
    pub audit_retention: i64,
    /// A retired key may still verify tokens for this long.
    pub access_ttl: i64,
}

impl PurgePolicy {
    pub fn new(config: &PurgeConfig, access_ttl: Duration, clock_leeway: Duration) -> Self {
        let access_ttl = duration_millis(access_ttl);
        Self {
            batch_size: config.batch_size,
            batch_pause: config.batch_pause,
            // A restarted replica rebuilds its revoked set from these rows.
            revoked_retention: duration_millis(config.revoked_retention).max(revocation_lifetime(
                access_ttl,
                duration_millis(clock_leeway),
            )),
            audit_retention: duration_millis(config.audit_retention),
            access_ttl,
        }
    }

    fn cutoffs(&self, now: i64) -> PurgeCutoffs {
        PurgeCutoffs {
            now,
            revoked_before: now - self.revoked_retention,
            audit_before: now - self.audit_retention,
            // A replica may sign with a retired key until its next state
            // sync: keep the key as long as revocations are kept.
            key_retired_before: now - self.access_ttl - REVOCATION_MARGIN,
        }
    }
}

/// What one purge did.
#[derive(Debug, Clone, Default)]
pub struct PurgeReport {
    /// Rows deleted per kind, in `PurgeKind::ALL` order.
    pub deleted: Vec<(PurgeKind, u64)>,
    pub duration: Duration,
    /// Another replica held the purge lock; nothing was done.
    pub skipped: bool,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.deleted.iter().map(|(_, n)| n).sum()
    }

    pub fn deleted(&self, kind: PurgeKind) -> u64 {
        self.deleted
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

pub struct Purger {
    store: Store,
    clock: SharedClock,
    policy: PurgePolicy,
    metrics: Arc<Metrics>,
}

impl Purger {
    pub fn new(
        store: Store,
        clock: SharedClock,
        policy: PurgePolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            clock,
            policy,
            metrics,
        }
    }

    /// One full purge: every kind, batch after batch until nothing is left.
    pub async fn purge_once(&self) -> StoreResult<PurgeReport> {
        let started = Instant::now();
        let Some(lock) = self.store.try_purge_lock().await? else {
            return Ok(PurgeReport {
                skipped: true,
                ..PurgeReport::default()
            });
        };
        let cutoffs = self.policy.cutoffs(self.clock.now_millis());
        for kind in PurgeKind::ALL {
            let waiting = self.store.purge_backlog(kind, &cutoffs).await?;
            self.metrics.purge_backlog(kind, waiting);
        }
        let mut report = PurgeReport::default();
        for kind in PurgeKind::ALL {
            let mut total = 0;
            let mut resume = None;
            loop {
                let batch_started = Instant::now();
                let batch = self
                    .store
                    .purge_batch(kind, &cutoffs, self.policy.batch_size, resume.as_ref())
                    .await?;
                let batch_took = batch_started.elapsed();
                total += batch.deleted;
                if batch.deleted > 0 {
                    self.metrics.purge_deleted(kind, batch.deleted);
                }
                let Some(next) = batch.resume else {
                    break;
                };
                resume = Some(next);
                // Yield the database at least as long as the batch held it, so
                // requests queued behind a batch (on SQLite, behind the one
                // connection) wait at most about one batch.
                tokio::time::sleep(self.policy.batch_pause.max(batch_took)).await;
            }
            report.deleted.push((kind, total));
        }
        lock.release().await?;
        report.duration = started.elapsed();
        self.metrics.purge_finished(report.duration.as_secs_f64());
        let live = self
            .store
            .live_session_count(self.clock.now_millis())
            .await?;
        self.metrics.sessions_active(live);
        Ok(report)
    }

    /// Purges every `every` until `stop` changes. Failures are logged and
    /// retried at the next tick: a purge is idempotent.
    pub async fn run(&self, every: Duration, stop: watch::Receiver<bool>) {
        super::every(every, stop, || async {
            match self.purge_once().await {
                Ok(report) if report.skipped => {
                    tracing::debug!("purge skipped: another replica is purging");
                }
                Ok(report) => tracing::info!(
                    deleted = report.total(),
                    duration_ms = report.duration.as_millis() as u64,
                    "purge finished"
                ),
                Err(e) => tracing::warn!(error = %e, "purge failed; retrying at the next interval"),
            }
        })
        .await;
    }
}
