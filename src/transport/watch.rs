//! WatchRevocations: a snapshot or the delta since the watcher's cursor,
//! then changes as they are recorded, and heartbeats in between.
//!
//! Every message carries the cursor of the state after it, so a watcher
//! that resumes from any message it got misses nothing. Snapshots and
//! catch-ups are split into pieces of at most `PIECE` revocations (no
//! message comes near a client's 4 MiB default limit); only the last piece
//! carries a cursor.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert;
use crate::proto as pb;
use crate::verify::clock::Millis;
use crate::verify::revocation_feed::{Catchup, Cursor};
use crate::verify::validation::TokenValidation;
use pb::watch_revocations_response::Event;

pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>>;

/// Messages buffered per watcher; a watcher this far behind blocks only
/// its own task.
const BUFFER: usize = 16;

/// Revocations per message: ~53 bytes each on the wire, so ~0.5 MiB.
const PIECE: usize = 10_000;

/// `stopping` turns true when the server shuts down: the stream then ends
/// with UNAVAILABLE (a graceful shutdown waits for open streams, and this
/// one would never end by itself), and the watcher reconnects elsewhere.
pub fn stream(
    validation: Arc<dyn TokenValidation>,
    from: Option<Cursor>,
    heartbeat: Duration,
    mut stopping: watch::Receiver<bool>,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let out = Outbox {
            tx,
            validation: validation.clone(),
            heartbeat,
        };
        // Whatever is recorded from here on wakes us: nothing can slip
        // between a catch-up and the wait that follows it.
        let feed = validation.validator().feed();
        let mut changes = feed.subscribe();
        let mut cursor = from;
        loop {
            let (catchup, at) = feed.catch_up(cursor);
            for (event, after) in events(&*validation, catchup, cursor, at) {
                if !out.send(event, after, &mut stopping).await {
                    return;
                }
            }
            cursor = Some(at);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(heartbeat) => {
                    if !out.send(Event::Heartbeat(pb::Heartbeat {}), Some(at), &mut stopping).await {
                        return;
                    }
                }
                _ = out.tx.closed() => return,
                _ = stopped(&mut stopping) => {
                    let _ = out.tx.try_send(Err(Status::unavailable("the server is shutting down")));
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

struct Outbox {
    tx: mpsc::Sender<Result<pb::WatchRevocationsResponse, Status>>,
    validation: Arc<dyn TokenValidation>,
    heartbeat: Duration,
}

impl Outbox {
    /// Sends one message; false once the watcher is gone or the server is
    /// stopping (a watcher that stops reading cannot hold up a shutdown).
    async fn send(
        &self,
        event: Event,
        after: Option<Cursor>,
        stopping: &mut watch::Receiver<bool>,
    ) -> bool {
        let message = pb::WatchRevocationsResponse {
            cursor: after.map(|c| c.encode()).unwrap_or_default(),
            sent_at: convert::timestamp(self.validation.now()),
            event: Some(event),
            state_age: self
                .validation
                .state_age()
                .and_then(|age| prost_types::Duration::try_from(age).ok()),
            heartbeat_interval: prost_types::Duration::try_from(self.heartbeat).ok(),
        };
        tokio::select! {
            sent = self.tx.send(Ok(message)) => sent.is_ok(),
            _ = stopped(stopping) => false,
        }
    }
}

/// The messages of one catch-up, each with the cursor of the state after
/// it (`None` on pieces before the last).
fn events(
    validation: &dyn TokenValidation,
    catchup: Catchup,
    from: Option<Cursor>,
    at: Cursor,
) -> Vec<(Event, Option<Cursor>)> {
    let validator = validation.validator();
    let keys = || convert::jwk_set(validator.keys().public_keys());
    match catchup {
        Catchup::Snapshot => {
            let revoked = validator.revoked_sessions().snapshot();
            let mut pieces: Vec<_> = revoked.chunks(PIECE).collect();
            if pieces.is_empty() {
                pieces.push(&[]);
            }
            let last = pieces.len() - 1;
            pieces
                .into_iter()
                .enumerate()
                .map(|(i, piece)| {
                    let snapshot = pb::Snapshot {
                        revoked: revoked_sessions(piece),
                        keys: (i == 0).then(keys),
                        more: i < last,
                        withdrawn_key_ids: if i == 0 {
                            validator.withdrawn_keys()
                        } else {
                            Vec::new()
                        },
                    };
                    (Event::Snapshot(snapshot), (i == last).then_some(at))
                })
                .collect()
        }
        Catchup::Delta {
            revoked,
            keys_changed,
            withdrawn_keys,
        } => {
            let mut out = Vec::new();
            if !withdrawn_keys.is_empty() {
                // Never resumed from: the key set follows at once.
                let withdrawn = pb::KeysWithdrawn {
                    key_ids: withdrawn_keys,
                };
                out.push((Event::KeysWithdrawn(withdrawn), None));
            }
            if keys_changed {
                // After this message the watcher has the new keys but not
                // yet the revocations that follow.
                let after = Cursor {
                    seq: from.map_or(at.seq, |f| f.seq),
                    ..at
                };
                out.push((Event::Keys(keys()), Some(after)));
            }
            let pieces: Vec<_> = revoked.chunks(PIECE).collect();
            let last = pieces.len().saturating_sub(1);
            for (i, piece) in pieces.into_iter().enumerate() {
                let batch = pb::Revocations {
                    sessions: revoked_sessions(piece),
                };
                out.push((Event::Revoked(batch), (i == last).then_some(at)));
            }
            out
        }
    }
}

fn revoked_sessions(sessions: &[(uuid::Uuid, Millis)]) -> Vec<pb::RevokedSession> {
    sessions
        .iter()
        .map(|(id, until)| pb::RevokedSession {
            session_id: id.to_string(),
            relevant_until: convert::timestamp(*until),
        })
        .collect()
}
