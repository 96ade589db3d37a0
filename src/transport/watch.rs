//! WatchRevocations: a snapshot or the delta since the watcher's cursor,
//! then changes as they are recorded, and heartbeats in between.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert;
use crate::clock::Millis;
use crate::domain::revocation_feed::{Catchup, Cursor};
use crate::domain::validation::TokenValidation;
use crate::proto as pb;
use pb::watch_revocations_response::Event;

pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>>;

/// Messages buffered per watcher; a watcher this far behind blocks only
/// its own task.
const BUFFER: usize = 16;

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
        // Whatever is recorded from here on wakes us: nothing can slip
        // between a catch-up and the wait that follows it.
        let feed = validation.validator().feed();
        let mut changes = feed.subscribe();
        let mut cursor = from;
        loop {
            let (catchup, at) = feed.catch_up(cursor);
            cursor = Some(at);
            let at = at.encode();
            let now = validation.now();
            for event in events(&*validation, catchup) {
                if tx.send(Ok(message(&at, now, event))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(heartbeat) => {
                    let beat = message(&at, validation.now(), Event::Heartbeat(pb::Heartbeat {}));
                    if tx.send(Ok(beat)).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                _ = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    let _ = tx.send(Err(Status::unavailable("the server is shutting down"))).await;
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

fn events(validation: &dyn TokenValidation, catchup: Catchup) -> Vec<Event> {
    let validator = validation.validator();
    match catchup {
        Catchup::Snapshot => vec![Event::Snapshot(pb::Snapshot {
            revoked: revoked_sessions(validator.revoked_sessions().snapshot()),
            keys: Some(convert::jwk_set(validator.keys().public_keys())),
        })],
        Catchup::Delta {
            revoked,
            keys_changed,
        } => {
            let mut out = Vec::new();
            if keys_changed {
                out.push(Event::Keys(convert::jwk_set(
                    validator.keys().public_keys(),
                )));
            }
            if !revoked.is_empty() {
                out.push(Event::Revoked(pb::Revocations {
                    sessions: revoked_sessions(revoked),
                }));
            }
            out
        }
    }
}

fn revoked_sessions(sessions: Vec<(uuid::Uuid, Millis)>) -> Vec<pb::RevokedSession> {
    sessions
        .into_iter()
        .map(|(id, until)| pb::RevokedSession {
            session_id: id.to_string(),
            relevant_until: convert::timestamp(until),
        })
        .collect()
}

fn message(cursor: &str, now: Millis, event: Event) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        cursor: cursor.to_owned(),
        sent_at: convert::timestamp(now),
        event: Some(event),
    }
}
