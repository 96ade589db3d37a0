//! Audit events that must neither slow down nor block the request that
//! caused them (refused requests): queued in a bounded channel and written
//! in batches by one task. When the queue is full, events are dropped and
//! counted rather than queued without bound.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::domain::audit::AuditEvent;
use crate::domain::ports::AuditLog;

const CAPACITY: usize = 4096;
const BATCH: usize = 256;

#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<AuditEvent>,
    dropped: Arc<AtomicU64>,
}

pub struct AuditReceiver(mpsc::Receiver<AuditEvent>);

impl AuditQueue {
    pub fn new() -> (Self, AuditReceiver) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let queue = Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (queue, AuditReceiver(rx))
    }

    /// Queues an event; never waits.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit queue full: audit events dropped");
            }
        }
    }
}

/// Writes queued events until `stop` changes, then writes what is left.
pub async fn run(
    store: Arc<dyn AuditLog>,
    mut events: AuditReceiver,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = events.0.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
            }
            _ = stop.changed() => break,
        }
        write(&*store, &mut batch).await;
    }
    events.0.close();
    while events.0.recv_many(&mut batch, BATCH).await > 0 {
        write(&*store, &mut batch).await;
    }
}

async fn write(store: &dyn AuditLog, batch: &mut Vec<AuditEvent>) {
    if let Err(e) = store.record(batch).await {
        tracing::warn!(error = %e, events = batch.len(), "audit events could not be written");
    }
    batch.clear();
}
