//! The ordered record of what validators must learn: revoked sessions and
//! key-set changes, for WatchRevocations. Each revocation gets a sequence
//! number; a watcher resumes after the last one it saw, or starts over from
//! a snapshot when it cannot (another process, or history already trimmed).
//! A snapshot holds every revocation of the last access-token lifetime;
//! the transport sends a large one in pieces.
use std::collections::VecDeque;
use std::sync::Mutex;

use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::watch;
use uuid::Uuid;

use crate::clock::Millis;

/// Revocations kept for resuming watchers; older ones are served by snapshot.
const HISTORY: usize = 100_000;

/// Where a watcher is: which process's history, how far in it, and which
/// key set it has. Opaque to clients (`epoch.seq.keys`, hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    pub seq: u64,
    pub keys_version: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{:x}.{:x}.{:x}", self.epoch, self.seq, self.keys_version)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| u64::from_str_radix(p, 16).ok());
        let cursor = Cursor {
            epoch: parts.next()??,
            seq: parts.next()??,
            keys_version: parts.next()??,
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// What a watcher at some cursor must be sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Catchup {
    /// Everything, from scratch: the cursor is unknown or too old.
    Snapshot,
    /// The revocations after the cursor (maybe none), and whether the key
    /// set changed since.
    Delta {
        revoked: Vec<(Uuid, Millis)>,
        keys_changed: bool,
        /// Keys withdrawn since the cursor (the key set changed too).
        withdrawn_keys: Vec<String>,
    },
}

struct History {
    /// Sequence number of the last revocation recorded.
    seq: u64,
    keys_version: u64,
    log: VecDeque<(u64, Uuid, Millis)>,
    /// Withdrawn kids, each with the key-set version its withdrawal made.
    withdrawn: Vec<(u64, String)>,
}

pub struct RevocationFeed {
    epoch: u64,
    history: Mutex<History>,
    /// Bumped on every change, to wake watchers.
    changed: watch::Sender<u64>,
}

impl Default for RevocationFeed {
    fn default() -> Self {
        let mut epoch = [0u8; 8];
        // A clash only costs a watcher a snapshot it did not need.
        let _ = SystemRandom::new().fill(&mut epoch);
        Self {
            epoch: u64::from_be_bytes(epoch),
            history: Mutex::new(History {
                seq: 0,
                keys_version: 0,
                log: VecDeque::new(),
                withdrawn: Vec::new(),
            }),
            changed: watch::channel(0).0,
        }
    }
}

impl RevocationFeed {
    /// Records revocations that were just added to the revoked set (the
    /// order matters: a snapshot taken at cursor N holds every revocation
    /// numbered up to N).
    pub fn revoked(&self, sessions: &[(Uuid, Millis)]) {
        if sessions.is_empty() {
            return;
        }
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        for (id, until) in sessions {
            h.seq += 1;
            let seq = h.seq;
            h.log.push_back((seq, *id, *until));
        }
        while h.log.len() > HISTORY {
            h.log.pop_front();
        }
        drop(h);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn keys_changed(&self) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys_version += 1;
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records withdrawn keys: a key-set change that watchers are told of
    /// by name, so that they refuse the kid even in a stale key set.
    pub fn keys_withdrawn(&self, kids: &[String]) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.keys_version += 1;
        let version = h.keys_version;
        h.withdrawn
            .extend(kids.iter().map(|kid| (version, kid.clone())));
        drop(h);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Forgets history nobody needs: revocations at the front that no
    /// longer matter at `now` (a watcher that far behind gets a snapshot).
    pub fn prune(&self, now: Millis) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        while h.log.front().is_some_and(|(_, _, until)| *until <= now) {
            h.log.pop_front();
        }
    }

    /// What a watcher at `from` is missing, and the cursor it will be at.
    pub fn catch_up(&self, from: Option<Cursor>) -> (Catchup, Cursor) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let now = Cursor {
            epoch: self.epoch,
            seq: h.seq,
            keys_version: h.keys_version,
        };
        let Some(from) = from.filter(|c| c.epoch == self.epoch && c.seq <= h.seq) else {
            return (Catchup::Snapshot, now);
        };
        let oldest_kept = h.log.front().map_or(h.seq + 1, |(seq, _, _)| *seq);
        if from.seq + 1 < oldest_kept {
            return (Catchup::Snapshot, now);
        }
        let revoked = h
            .log
            .iter()
            .filter(|(seq, _, _)| *seq > from.seq)
            .map(|(_, id, until)| (*id, *until))
            .collect();
        let keys_changed = from.keys_version != h.keys_version;
        let withdrawn_keys = h
            .withdrawn
            .iter()
            .filter(|(version, _)| *version > from.keys_version)
            .map(|(_, kid)| kid.clone())
            .collect();
        (
            Catchup::Delta {
                revoked,
                keys_changed,
                withdrawn_keys,
            },
            now,
        )
    }

    /// Wakes when anything is recorded after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            epoch: u64::MAX,
            seq: 7,
            keys_version: 2,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "1.2", "1.2.3.4", "x.1.2", "1..2"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_withdrawal_reaches_watchers_behind_it_by_name() {
        let feed = RevocationFeed::default();
        let (_, start) = feed.catch_up(None);
        feed.keys_withdrawn(&["k1".into()]);
        let (_, middle) = feed.catch_up(Some(start));
        feed.keys_changed();
        feed.keys_withdrawn(&["k2".into()]);
        let withdrawn = |from| match feed.catch_up(Some(from)).0 {
            Catchup::Delta {
                withdrawn_keys,
                keys_changed,
                ..
            } => {
                assert!(keys_changed);
                withdrawn_keys
            }
            Catchup::Snapshot => panic!("no snapshot needed"),
        };
        assert_eq!(withdrawn(start), ["k1", "k2"]);
        assert_eq!(withdrawn(middle), ["k2"]);
    }

    #[test]
    fn resumes_from_a_cursor_or_starts_over() {
        let feed = RevocationFeed::default();
        let (first, _) = feed.catch_up(None);
        assert_eq!(first, Catchup::Snapshot);
        let (_, start) = feed.catch_up(None);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        feed.revoked(&[(a, 100)]);
        feed.keys_changed();
        feed.revoked(&[(b, 200)]);
        let (delta, at) = feed.catch_up(Some(start));
        assert_eq!(
            delta,
            Catchup::Delta {
                revoked: vec![(a, 100), (b, 200)],
                keys_changed: true,
                withdrawn_keys: vec![],
            }
        );
        let (nothing, _) = feed.catch_up(Some(at));
        assert_eq!(
            nothing,
            Catchup::Delta {
                revoked: vec![],
                keys_changed: false,
                withdrawn_keys: vec![],
            }
        );
        // Another process's cursor, or a cursor from the future: start over.
        let foreign = Cursor {
            epoch: at.epoch ^ 1,
            ..at
        };
        assert_eq!(feed.catch_up(Some(foreign)).0, Catchup::Snapshot);
        let ahead = Cursor {
            seq: at.seq + 5,
            ..at
        };
        assert_eq!(feed.catch_up(Some(ahead)).0, Catchup::Snapshot);
        // History trimmed past the cursor: start over.
        feed.prune(150);
        assert_eq!(feed.catch_up(Some(start)).0, Catchup::Snapshot);
        assert!(matches!(
            feed.catch_up(Some(Cursor { seq: 1, ..at })).0,
            Catchup::Delta { .. }
        ));
    }
}
