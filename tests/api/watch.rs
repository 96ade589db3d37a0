//! WatchRevocations: a snapshot first, then revocations and key changes as
//! they happen, heartbeats when idle, and resumption from a cursor.
use std::time::Duration;

use tonic::Streaming;

use crate::common::*;
use token_authority::proto as pb;
use token_authority::proto::watch_revocations_response::Event;

async fn open(server: &TestServer, cursor: &str) -> Streaming<pb::WatchRevocationsResponse> {
    server
        .client()
        .watch_revocations(pb::WatchRevocationsRequest {
            cursor: cursor.into(),
        })
        .await
        .expect("watch")
        .into_inner()
}

/// The next message that is not a heartbeat (waits at most 5 s).
async fn next_event(stream: &mut Streaming<pb::WatchRevocationsResponse>) -> (String, Event) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("a message within 5 s")
            .expect("stream ok")
            .expect("stream open");
        match message.event.expect("event") {
            Event::Heartbeat(_) => continue,
            event => return (message.cursor, event),
        }
    }
}

fn revoked_ids(sessions: &[pb::RevokedSession]) -> Vec<String> {
    let mut ids: Vec<_> = sessions.iter().map(|s| s.session_id.clone()).collect();
    ids.sort();
    ids
}

async fn watchers_get_a_snapshot_then_changes_and_resume_from_a_cursor(backend: Backend) {
    let server =
        TestServer::start_with(backend, |c| c.watch_heartbeat = Duration::from_millis(200)).await;
    let first = server.issue("acme", "alice").await;
    let second = server.issue("acme", "bob").await;

    let mut stream = open(&server, "").await;
    let (_, event) = next_event(&mut stream).await;
    let Event::Snapshot(snapshot) = event else {
        panic!("first message must be a snapshot: {event:?}")
    };
    assert!(snapshot.revoked.is_empty());
    assert_eq!(snapshot.keys.expect("keys").keys.len(), 1);

    server.revoke("acme", &first.session_id).await;
    let (cursor, event) = next_event(&mut stream).await;
    let Event::Revoked(revoked) = event else {
        panic!("expected a revocation: {event:?}")
    };
    assert_eq!(
        revoked_ids(&revoked.sessions),
        vec![first.session_id.clone()]
    );
    let until = revoked.sessions[0].relevant_until.as_ref().unwrap().seconds;
    let now = server.authority.now() / 1000;
    assert!(
        (until - now - (15 * 60 + 2 * 60 + 60)).abs() <= 1,
        "access_ttl + 2 x leeway + margin: {}",
        until - now
    );

    // Idle: heartbeats keep coming.
    let beat = tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(beat.event, Some(Event::Heartbeat(_))), "{beat:?}");
    drop(stream);

    // While disconnected, another revocation; resuming sends only it.
    server.revoke("acme", &second.session_id).await;
    let mut resumed = open(&server, &cursor).await;
    let (_, event) = next_event(&mut resumed).await;
    let Event::Revoked(delta) = event else {
        panic!("a resumed stream sends the delta, not a snapshot: {event:?}")
    };
    assert_eq!(
        revoked_ids(&delta.sessions),
        vec![second.session_id.clone()]
    );

    // A key added meanwhile arrives as the new key set.
    server.rotate_key("", None).await;
    let (_, event) = next_event(&mut resumed).await;
    let Event::Keys(keys) = event else {
        panic!("expected the key set: {event:?}")
    };
    assert_eq!(keys.keys.len(), 2);

    // A cursor the server cannot resume from starts over with a snapshot.
    for unknown in ["zzz", "1.2.3"] {
        let mut fresh = open(&server, unknown).await;
        let (_, event) = next_event(&mut fresh).await;
        let Event::Snapshot(snapshot) = event else {
            panic!("expected a snapshot for {unknown:?}: {event:?}")
        };
        let mut both = vec![first.session_id.clone(), second.session_id.clone()];
        both.sort();
        assert_eq!(revoked_ids(&snapshot.revoked), both);
        assert_eq!(snapshot.keys.unwrap().keys.len(), 2);
    }
    let oversized = server
        .client()
        .watch_revocations(pb::WatchRevocationsRequest {
            cursor: "9".repeat(65),
        })
        .await;
    assert_invalid(oversized, "cursor");
}

/// A snapshot of many revocations comes in pieces a client with default
/// limits (4 MiB) reads; only the last piece can be resumed from.
async fn large_snapshots_come_in_pieces(backend: Backend) {
    let server = TestServer::start(backend).await;
    let until = server.authority.now() + 3_600_000;
    let many: Vec<_> = (0..25_000).map(|_| (uuid::Uuid::now_v7(), until)).collect();
    server.authority.validator().revoke(&many);

    let mut stream = open(&server, "").await;
    let mut pieces = Vec::new();
    loop {
        let (cursor, event) = next_event(&mut stream).await;
        let Event::Snapshot(piece) = event else {
            panic!("expected a snapshot piece: {event:?}")
        };
        let more = piece.more;
        pieces.push((cursor, piece));
        if !more {
            break;
        }
    }
    assert_eq!(pieces.len(), 3, "10,000 revocations per piece");
    assert!(pieces[0].1.keys.is_some(), "keys in the first piece");
    assert!(pieces[1..].iter().all(|(_, p)| p.keys.is_none()));
    assert!(
        pieces[..2].iter().all(|(cursor, _)| cursor.is_empty()),
        "no resuming mid-snapshot"
    );
    assert!(!pieces[2].0.is_empty());
    let total: usize = pieces.iter().map(|(_, p)| p.revoked.len()).sum();
    assert_eq!(total, 25_000);
}

/// Every message's cursor is the state after it: resuming right after a
/// key-set message still delivers the revocations that followed it.
async fn resuming_after_a_key_change_misses_no_revocation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let mut stream = open(&server, "").await;
    let (start, _) = next_event(&mut stream).await;
    drop(stream);

    server.rotate_key("", None).await;
    server.revoke("acme", &pair.session_id).await;

    let mut resumed = open(&server, &start).await;
    let (after_keys, event) = next_event(&mut resumed).await;
    assert!(matches!(event, Event::Keys(_)), "{event:?}");
    // The link drops right after the key set.
    drop(resumed);
    let mut again = open(&server, &after_keys).await;
    let (_, event) = next_event(&mut again).await;
    let Event::Revoked(revoked) = event else {
        panic!("the revocation after the key change was skipped: {event:?}")
    };
    assert_eq!(
        revoked_ids(&revoked.sessions),
        vec![pair.session_id.clone()]
    );
}

crate::on_both_backends!(
    watchers_get_a_snapshot_then_changes_and_resume_from_a_cursor,
    large_snapshots_come_in_pieces,
    resuming_after_a_key_change_misses_no_revocation,
);
