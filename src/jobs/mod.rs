//! Background tasks that run beside the gRPC server.
pub mod audit_writer;
pub mod key_rotation;
pub mod purge;
pub mod state_sync;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `tick` now and then every `every` (a slow tick delays the next one
/// rather than piling up), until `stop` changes.
pub async fn every<F, Fut>(every: Duration, mut stop: watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        tick().await;
    }
}
