//! Listing sessions, and what an unavailable store changes (nothing).
use super::*;

#[tokio::test]
async fn sessions_are_listed_in_creation_order_page_by_page() {
    let fx = Fixture::new().await;
    let mut live = Vec::new();
    for i in 0..6 {
        let pair = fx.issue("acme", "alice").await;
        fx.advance(1_000);
        if i == 2 {
            fx.revoke(&anonymous(), "acme", session_target(&pair), "")
                .await
                .unwrap();
        } else {
            live.push(pair.session_id);
        }
    }
    fx.issue("acme", "bob").await;
    fx.issue("globex", "alice").await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut sizes = Vec::new();
    loop {
        let page = fx
            .list(&anonymous(), "acme", "alice", 2, &token)
            .await
            .unwrap();
        sizes.push(page.sessions.len());
        seen.extend(page.sessions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(sizes, [2, 2, 1]);
    let ids: Vec<_> = seen.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(ids, live);
    let first = &seen[0];
    assert_eq!(
        first,
        &SessionInfo {
            session_id: live[0].clone(),
            created_at: T0,
            last_used_at: T0,
            expires_at: T0 + IDLE_TTL,
            refresh_count: 0,
            device: Device {
                name: "laptop".into(),
                user_agent: "test/1".into(),
                ip: "192.0.2.1".into(),
            },
            audience: "api".into(),
            scopes: vec!["read".into(), "write".into()],
            client_id: "anonymous".into(),
            certificate_thumbprint: String::new(),
            refresh_token_bound: false,
        }
    );

    // A page size of 0 is the default (50): everything at once.
    let all = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    assert_eq!(all.sessions.len(), 5);
    assert_eq!(all.next_page_token, "");
    // Exactly a page: no token for an empty next page.
    let five = fx.list(&anonymous(), "acme", "alice", 5, "").await.unwrap();
    assert_eq!(
        (five.sessions.len(), five.next_page_token.as_str()),
        (5, "")
    );
    assert_err!(
        fx.list(&anonymous(), "acme", "alice", 2, "!!").await,
        Error::InvalidArgument {
            field: "page_token",
            ..
        }
    );
    assert!(fx
        .list(&anonymous(), "acme", "nobody", 2, "")
        .await
        .unwrap()
        .sessions
        .is_empty());
}

#[tokio::test]
async fn a_listed_session_shows_its_refreshes_and_new_device() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    fx.advance(5_000);
    fx.authority
        .refresh(
            &anonymous(),
            RefreshRequest {
                refresh_token: pair.refresh_token.clone(),
                device: Device {
                    name: String::new(),
                    user_agent: "test/2".into(),
                    ip: "2001:db8::1".into(),
                },
                binding: None,
            },
        )
        .await
        .unwrap();
    let page = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    let info = &page.sessions[0];
    assert_eq!(info.refresh_count, 1);
    assert_eq!(info.last_used_at, T0 + 5_000);
    assert_eq!(info.expires_at, T0 + 5_000 + IDLE_TTL);
    assert_eq!(
        info.device,
        Device {
            name: "laptop".into(),
            user_agent: "test/2".into(),
            ip: "2001:db8::1".into(),
        }
    );
}

#[tokio::test]
async fn an_unavailable_store_answers_storage_unavailable_and_nothing_changes() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let keys = fx.authority.list_signing_keys().await.unwrap();
    let before = fx.snapshot();
    fx.store.set_unavailable(true);

    let unavailable = |what: &str, e: Error| {
        assert!(matches!(e, Error::Unavailable(_)), "{what}: {e:?}");
        assert_eq!(e.reason(), "STORAGE_UNAVAILABLE", "{what}");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{what}");
    };
    let a = anonymous();
    unavailable(
        "issue",
        fx.try_issue(&a, "acme", "alice").await.unwrap_err(),
    );
    unavailable(
        "refresh",
        fx.refresh(&pair.refresh_token).await.unwrap_err(),
    );
    let by_id = fx.revoke(&a, "acme", session_target(&pair), "").await;
    unavailable("revoke session", by_id.unwrap_err());
    let by_token = RevokeTarget::RefreshToken(pair.refresh_token.clone());
    unavailable(
        "revoke token",
        fx.revoke(&a, "", by_token, "").await.unwrap_err(),
    );
    let all = RevokeTarget::AllSessions {
        subject: "alice".into(),
    };
    unavailable(
        "revoke all",
        fx.revoke(&a, "acme", all, "").await.unwrap_err(),
    );
    unavailable(
        "list",
        fx.list(&a, "acme", "alice", 0, "").await.unwrap_err(),
    );
    unavailable(
        "rotate key",
        fx.authority
            .rotate_signing_key(&a, None, Some(0))
            .await
            .unwrap_err(),
    );
    unavailable(
        "list keys",
        fx.authority.list_signing_keys().await.unwrap_err(),
    );
    unavailable("sync", fx.authority.sync_from_store().await.unwrap_err());

    // Validation needs no store.
    fx.validate(&pair.access_token).unwrap();

    fx.store.set_unavailable(false);
    assert_eq!(fx.snapshot(), before);
    assert_eq!(fx.authority.list_signing_keys().await.unwrap(), keys);
    // The refresh token was not spent: it rotates normally now.
    fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(fx.session(&pair.session_id).generation, 1);
}

#[tokio::test]
async fn a_start_against_an_unavailable_store_fails_unavailable() {
    let kek_dir = TempDir::new().unwrap();
    let store = Arc::new(MemoryStore::new());
    store.set_unavailable(true);
    let clock = Arc::new(ManualClock::new(T0));
    let started = Authority::start(store.clone(), clock, settings(kek_dir.path().join("kek")));
    match started.await {
        Err(e) => assert_eq!(e.reason(), "STORAGE_UNAVAILABLE", "{e:?}"),
        Ok(_) => panic!("started without a store"),
    }
    store.set_unavailable(false);
    assert!(store.audit_events().is_empty());
    assert!(store.sessions().is_empty());
}
