//! Keeps each replica's in-memory state (revoked sessions, signing keys) in
//! step with the database that all replicas share. Polling rather than
//! PostgreSQL LISTEN/NOTIFY: it works on SQLite too, needs no dedicated
//! connection, and cannot miss a notification sent while it was disconnected.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Authority;

pub async fn run(authority: Arc<Authority>, every: Duration, stop: watch::Receiver<bool>) {
    super::every(every, stop, || async {
        if let Err(e) = authority.sync_from_store().await {
            // Validate keeps answering from what it has; the next tick retries.
            tracing::warn!(error = %e, "state sync from the database failed");
        }
    })
    .await;
}
