//! Scheduled signing-key rotation: every check, a new key is added if the
//! newest one has been signing for `keys.rotation_interval`. With several
//! replicas, whichever checks first adds it (under a lock); the others see
//! it through state sync.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Authority;

pub async fn run(authority: Arc<Authority>, every: Duration, stop: watch::Receiver<bool>) {
    super::every(every, stop, || async {
        match authority.rotate_if_due().await {
            Ok(Some(kid)) => tracing::info!(%kid, "scheduled signing-key rotation"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled key rotation failed; retrying later"),
        }
    })
    .await;
}
