//! Keeps the in-memory revoked-session set in step with the database and
//! forgets revocations whose access tokens have all expired.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Authority;

pub async fn run(authority: Arc<Authority>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = authority.sync_revocations().await {
            // Validate keeps answering from what it has; the next tick retries.
            tracing::warn!(error = %e, "revocation sync failed");
        }
    }
}
