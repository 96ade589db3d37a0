//! Keeps each replica's in-memory state (revoked sessions, signing keys) in
//! step with the database that all replicas share. On PostgreSQL a replica
//! that revokes notifies the others (LISTEN/NOTIFY), which then read the
//! revocation cursor at once; every replica also polls every
//! `state_sync_interval`, which catches anything a notification missed (a
//! listener that was disconnected) and is all there is on SQLite.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::domain::Authority;
use crate::storage::Store;

/// Pause before reconnecting a listener whose connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// At most one warning this often about a failing listener.
const LISTEN_WARN_EVERY: Duration = Duration::from_secs(30);

pub async fn run(
    authority: Arc<Authority>,
    store: Store,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(store, wake.clone()));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = wake.notified() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = authority.sync_from_store().await {
            // Validate keeps answering from what it has; the next tick retries.
            tracing::warn!(error = %e, "state sync from the database failed");
        }
    }
    listener.abort();
}

/// Wakes the sync loop on every notification, and after every reconnect
/// (what was sent meanwhile is lost; the sync reads it by cursor).
async fn listen(store: Store, wake: Arc<Notify>) {
    let mut warned_at: Option<Instant> = None;
    let mut warn = |error: &dyn std::fmt::Display| {
        if warned_at.is_none_or(|at| at.elapsed() >= LISTEN_WARN_EVERY) {
            tracing::warn!(%error, "revocation notifications unavailable; polling meanwhile");
            warned_at = Some(Instant::now());
        }
    };
    loop {
        let mut changes = match store.state_changes().await {
            Ok(Some(changes)) => changes,
            Ok(None) => return,
            Err(e) => {
                warn(&e);
                tokio::time::sleep(LISTEN_RETRY).await;
                continue;
            }
        };
        wake.notify_one();
        loop {
            match changes.next().await {
                Ok(()) => wake.notify_one(),
                Err(e) => {
                    warn(&e);
                    wake.notify_one();
                    tokio::time::sleep(LISTEN_RETRY).await;
                    break;
                }
            }
        }
    }
}
