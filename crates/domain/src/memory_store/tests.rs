//! The store against the SQL store's semantics, where the authority's
//! tests do not pin them down.
use std::sync::Arc;

use token_authority_verify::clock::ManualClock;

use super::*;

const NOW: Millis = 1_000_000;

fn session(id: &str, subject: &str, created_at: Millis) -> Session {
    Session {
        id: id.into(),
        tenant_id: "t".into(),
        subject: subject.into(),
        audience: "a".into(),
        scopes: String::new(),
        extra_claims: None,
        client_id: "login".into(),
        generation: 0,
        token_digest: b"d0".to_vec(),
        previous_digest: None,
        rotated_at: None,
        created_at,
        last_used_at: created_at,
        expires_at: created_at + 100_000,
        idle_expires_at: created_at + 100_000,
        revoked_at: None,
        revoke_reason: None,
        revocation_seq: None,
        device_name: String::new(),
        user_agent: String::new(),
        ip: String::new(),
        certificate_thumbprint: None,
        refresh_thumbprint: None,
    }
}

fn revoke<'a>(id: &'a str, now: Millis) -> RevokeSession<'a> {
    RevokeSession {
        id,
        tenant_id: None,
        tenants: None,
        now,
        kind: AuditKind::Revoked,
        reason: "r",
    }
}

fn key(kid: &str, activates_at: Millis) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        algorithm: "EdDSA".into(),
        private_key: vec![1],
        public_key: vec![2],
        created_at: NOW,
        retired_at: None,
        activates_at,
        withdrawn_at: None,
    }
}

async fn page(store: &MemoryStore, from: RevocationsFrom) -> (Vec<String>, i64) {
    let page = store.revocations(from).await.unwrap();
    (page.session_ids, page.cursor)
}

#[tokio::test]
async fn revocations_resume_from_a_cursor_past_the_last_position() {
    let store = MemoryStore::new();
    for id in ["a", "b", "c", "d"] {
        store
            .insert_session(&session(id, "u", NOW), None)
            .await
            .unwrap();
    }
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        page(&store, RevocationsFrom::Cursor(0)).await,
        (ids(&[]), 1)
    );

    let revoked = store.revoke_session(revoke("b", NOW + 10)).await.unwrap();
    assert_eq!(revoked, RevokeOutcome::Revoked);
    assert_eq!(store.session("b").unwrap().revocation_seq, Some(1));
    assert_eq!(
        page(&store, RevocationsFrom::Cursor(1)).await,
        (ids(&["b"]), 2)
    );
    assert_eq!(
        page(&store, RevocationsFrom::Cursor(2)).await,
        (ids(&[]), 2)
    );

    // Revoking again changes nothing and uses up no position.
    let again = store.revoke_session(revoke("b", NOW + 11)).await.unwrap();
    assert_eq!(again, RevokeOutcome::AlreadyRevoked);
    assert_eq!(store.last_revocation_seq(), 1);
    assert_eq!(store.session("b").unwrap().revoked_at, Some(NOW + 10));

    // One call, one position for every session it revokes.
    let all = store
        .revoke_subject("t", "u", NOW + 20, "all")
        .await
        .unwrap();
    assert_eq!(all, ids(&["a", "c", "d"]));
    assert_eq!(
        page(&store, RevocationsFrom::Cursor(2)).await,
        (ids(&["a", "c", "d"]), 3)
    );
    assert_eq!(
        page(&store, RevocationsFrom::Cursor(1)).await,
        (ids(&["b", "a", "c", "d"]), 3)
    );
    // By time: revoked at or after.
    assert_eq!(
        page(&store, RevocationsFrom::Since(NOW + 11)).await,
        (ids(&["a", "c", "d"]), 3)
    );
    assert_eq!(
        page(&store, RevocationsFrom::Since(NOW + 10)).await,
        (ids(&["b", "a", "c", "d"]), 3)
    );
    assert_eq!(
        page(&store, RevocationsFrom::Since(NOW + 21)).await,
        (ids(&[]), 3)
    );
    // A transaction that found nothing still took a position (SQLite).
    assert!(store
        .revoke_subject("t", "u", NOW + 30, "none")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        page(&store, RevocationsFrom::Cursor(3)).await,
        (ids(&[]), 4)
    );
    let revoked = store.audit_events_of_kind(AuditKind::Revoked);
    assert_eq!(revoked.len(), 4);
}

#[tokio::test]
async fn revoking_checks_tenant_then_permission() {
    let store = MemoryStore::new();
    store
        .insert_session(&session("a", "u", NOW), None)
        .await
        .unwrap();
    let other = ["x".to_owned()];
    let mut target = revoke("a", NOW);
    target.tenant_id = Some("x");
    assert_eq!(
        store.revoke_session(target).await.unwrap(),
        RevokeOutcome::NotFound
    );
    let mut target = revoke("a", NOW);
    target.tenants = Some(&other);
    assert_eq!(
        store.revoke_session(target).await.unwrap(),
        RevokeOutcome::TenantNotPermitted
    );
    assert_eq!(
        store.revoke_session(revoke("nope", NOW)).await.unwrap(),
        RevokeOutcome::NotFound
    );
    assert_eq!(store.session("a").unwrap().revoked_at, None);
    assert_eq!(store.last_revocation_seq(), 0);
}

#[tokio::test]
async fn the_cap_evicts_the_least_recently_used_evictable_sessions() {
    let store = MemoryStore::new();
    let mut a = session("a", "u", NOW);
    a.last_used_at = NOW + 50;
    let b = session("b", "u", NOW + 10);
    let c = session("c", "u", NOW + 20);
    for s in [&a, &b, &c] {
        store.insert_session(s, None).await.unwrap();
    }
    let cap = |max, evictable_before| SessionCap {
        max,
        now: NOW + 100,
        evictable_before,
    };
    // Two must go, but only `a` is old enough; `b`, the oldest of the
    // others, becomes evictable once the window has moved past it.
    let d = Session {
        client_id: "by-test".into(),
        ..session("d", "u", NOW + 100)
    };
    let at_capacity = store
        .insert_session(&d, Some(cap(2, NOW + 5)))
        .await
        .unwrap();
    assert_eq!(
        at_capacity,
        Inserted::AtCapacity {
            evictable_at: NOW + 10 + 95 + 1
        }
    );
    assert!(store.session("d").is_none());
    assert_eq!(store.audit_events().len(), 3);

    let stored = store
        .insert_session(&d, Some(cap(3, NOW + 15)))
        .await
        .unwrap();
    // `b` was used least recently (`a` at NOW + 50).
    assert_eq!(
        stored,
        Inserted::Stored {
            evicted: vec!["b".into()]
        }
    );
    let b = store.session("b").unwrap();
    assert_eq!(b.revoked_at, Some(NOW + 100));
    assert_eq!(
        b.revoke_reason.as_deref(),
        Some("evicted: more than 3 sessions")
    );
    assert_eq!(b.revocation_seq, Some(1));
    let events = store.audit_events();
    let kinds: Vec<_> = events[3..].iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [AuditKind::Evicted, AuditKind::Issued]);
    assert_eq!(
        events[3].detail.as_deref(),
        Some("evicted: more than 3 sessions; for session d")
    );
    assert_eq!(events[4].detail.as_deref(), Some("by by-test"));
    // Under the cap: nothing evicted.
    let e = session("e", "v", NOW + 100);
    assert_eq!(
        store.insert_session(&e, Some(cap(1, NOW))).await.unwrap(),
        Inserted::Stored { evicted: vec![] }
    );
    // The same id twice is an error, not an overwrite.
    assert!(store.insert_session(&e, None).await.is_err());
}

#[tokio::test]
async fn a_rotation_applies_once_and_stamps_the_stores_clock() {
    let store_clock = Arc::new(ManualClock::new(NOW + 5_000));
    let store = MemoryStore::new().with_clock(store_clock.clone());
    store
        .insert_session(&session("a", "u", NOW), None)
        .await
        .unwrap();
    let rotation = Rotation {
        session_id: "a",
        tenants: None,
        from_generation: 0,
        from_digest: b"d0",
        to_digest: b"d1",
        now: NOW + 10,
        idle_expires_at: NOW + 500,
        device_name: None,
        user_agent: None,
        ip: Some("192.0.2.7"),
        presenter: None,
        requested_binding: None,
        binding_required: &[],
    };
    let rotated = store.rotate(&rotation, true).await.unwrap().unwrap();
    assert_eq!(rotated.generation, 1);
    assert_eq!(rotated.rotated_at, Some(NOW + 5_000));
    assert_eq!(rotated.ip, "192.0.2.7");
    assert_eq!(store.session("a").unwrap(), rotated);
    assert_eq!(store.rotate(&rotation, true).await.unwrap(), None);
    let refreshed = store.audit_events_of_kind(AuditKind::Refreshed);
    assert_eq!(refreshed.len(), 1);
    assert_eq!(refreshed[0].at, NOW + 10);
    assert_eq!(refreshed[0].detail.as_deref(), Some("generation 1"));

    let (_, store_now) = store
        .session_and_store_now("a", NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store_now, NOW + 5_000);
    store.set_clock(None);
    let (_, store_now) = store
        .session_and_store_now("a", NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store_now, NOW);
}

#[tokio::test]
async fn keys_activate_strictly_in_order_and_retire_the_older_ones() {
    let store = MemoryStore::new();
    let added = store
        .add_signing_key(key("k1", NOW), AddKeyIf::NoKeys, "first start")
        .await
        .unwrap();
    assert_eq!(added, Some(NOW));
    assert_eq!(
        store
            .add_signing_key(key("k2", NOW), AddKeyIf::NoKeys, "x")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .add_signing_key(key("k2", NOW), AddKeyIf::NewestActivatedBefore(NOW), "x")
            .await
            .unwrap(),
        None
    );
    // Activating no later than the newest: moved 1 ms after it.
    assert_eq!(
        store
            .add_signing_key(key("k2", NOW - 5), AddKeyIf::Always, "x")
            .await
            .unwrap(),
        Some(NOW + 1)
    );
    assert_eq!(
        store
            .add_signing_key(
                key("k3", NOW + 100),
                AddKeyIf::NewestActivatedBefore(NOW + 2),
                "schedule"
            )
            .await
            .unwrap(),
        Some(NOW + 100)
    );
    let keys = store.signing_keys().await.unwrap();
    let summary: Vec<_> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.activates_at, k.retired_at))
        .collect();
    assert_eq!(
        summary,
        [
            ("k3", NOW + 100, None),
            ("k2", NOW + 1, Some(NOW + 100)),
            ("k1", NOW, Some(NOW + 1)),
        ]
    );
    assert_eq!(
        store.newest_key_activation().await.unwrap(),
        Some(NOW + 100)
    );
    assert_eq!(store.signing_key_versions().await.unwrap().len(), 3);
    let rotated = store.audit_events_of_kind(AuditKind::KeyRotated);
    let by: Vec<_> = rotated.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(by, ["first start", "x", "schedule"]);
    assert_eq!(
        rotated[1].detail.as_deref(),
        Some("kid k2 (EdDSA) signs from 1000001")
    );
    store.replace_private_key("k2", vec![9]).await.unwrap();
    assert_eq!(store.signing_keys().await.unwrap()[1].private_key, [9]);
}

#[tokio::test]
async fn the_first_secret_stored_wins() {
    let store = MemoryStore::new();
    let first = store.secret_or_insert("s", vec![1], NOW).await.unwrap();
    let second = store.secret_or_insert("s", vec![2], NOW).await.unwrap();
    assert_eq!((first, second), (vec![1], vec![1]));
    store.replace_secret("s", &[7], vec![3]).await.unwrap();
    assert_eq!(store.secret_values().await.unwrap(), [vec![1]]);
    store.replace_secret("s", &[1], vec![3]).await.unwrap();
    assert_eq!(store.secret_values().await.unwrap(), [vec![3]]);
}

#[tokio::test]
async fn an_unavailable_store_fails_every_call_and_changes_nothing() {
    let store = MemoryStore::new();
    let a = session("a", "u", NOW);
    store.insert_session(&a, None).await.unwrap();
    store.set_unavailable(true);
    let unavailable = |e: StorageError| assert!(e.is_unavailable(), "{e}");
    let b = session("b", "u", NOW);
    unavailable(store.insert_session(&b, None).await.unwrap_err());
    unavailable(store.revoke_session(revoke("a", NOW)).await.unwrap_err());
    unavailable(store.revoke_subject("t", "u", NOW, "r").await.unwrap_err());
    unavailable(store.session_and_store_now("a", NOW).await.unwrap_err());
    unavailable(
        store
            .live_sessions("t", "u", NOW, None, 9)
            .await
            .unwrap_err(),
    );
    unavailable(
        store
            .revocations(RevocationsFrom::Cursor(0))
            .await
            .unwrap_err(),
    );
    unavailable(store.signing_keys().await.unwrap_err());
    unavailable(store.signing_key_versions().await.unwrap_err());
    let added = store.add_signing_key(key("k", NOW), AddKeyIf::Always, "x");
    unavailable(added.await.unwrap_err());
    unavailable(store.newest_key_activation().await.unwrap_err());
    unavailable(store.secret_or_insert("s", vec![1], NOW).await.unwrap_err());
    unavailable(store.secret_values().await.unwrap_err());
    unavailable(store.record(&[]).await.unwrap_err());
    store.set_unavailable(false);
    assert_eq!(store.sessions(), [a]);
    assert_eq!(store.audit_events().len(), 1);
    assert_eq!(store.last_revocation_seq(), 0);
    assert!(store.signing_keys().await.unwrap().is_empty());
}
