//! Issue and refresh: rotation, retries, replays, expiry, refresh limits.
use super::*;

#[tokio::test]
async fn an_issued_session_is_stored_audited_and_its_token_validates() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;

    assert_eq!(pair.access_token_expires_at, T0 + ACCESS_TTL);
    assert_eq!(pair.refresh_token_expires_at, T0 + IDLE_TTL);
    let s = fx.session(&pair.session_id);
    assert_eq!(
        (
            s.tenant_id.as_str(),
            s.subject.as_str(),
            s.audience.as_str()
        ),
        ("acme", "alice", "api")
    );
    assert_eq!(s.scopes, "read write");
    assert_eq!(s.client_id, "anonymous");
    assert_eq!(s.generation, 0);
    assert_eq!(s.token_digest, digest_of(&pair.refresh_token).to_vec());
    assert_eq!((s.created_at, s.last_used_at), (T0, T0));
    assert_eq!(
        (s.expires_at, s.idle_expires_at),
        (T0 + ABSOLUTE_TTL, T0 + IDLE_TTL)
    );
    assert_eq!(
        (s.previous_digest, s.rotated_at, s.revoked_at),
        (None, None, None)
    );
    assert_eq!(
        (s.device_name.as_str(), s.user_agent.as_str(), s.ip.as_str()),
        ("laptop", "test/1", "192.0.2.1")
    );

    let issued = fx.store.audit_events_of_kind(AuditKind::Issued);
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].session_id.as_deref(), Some(&*pair.session_id));
    assert_eq!(issued[0].detail.as_deref(), Some("by anonymous"));
    assert_eq!(issued[0].at, T0);

    let claims = fx.validate(&pair.access_token).unwrap().claims;
    assert_eq!(claims.sid, pair.session_id);
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.tenant.as_str(),
            claims.scope.as_str()
        ),
        ("alice", "acme", "read write")
    );
    assert_eq!(claims.iss, "https://issuer.test");
    assert_eq!(
        (claims.iat, claims.exp),
        (T0 / 1000, (T0 + ACCESS_TTL) / 1000)
    );
}

#[tokio::test]
async fn every_access_token_names_the_caller_that_issued_the_session() {
    let fx = Fixture::new().await;
    let login = limited_to("login-service", &["acme"]);
    let gateway = limited_to("gateway", &["acme"]);
    let pair = fx.try_issue(&login, "acme", "alice").await.unwrap();
    assert_eq!(fx.session(&pair.session_id).client_id, "login-service");
    let issued = fx.validate(&pair.access_token).unwrap().claims;
    assert_eq!(issued.client_id, "login-service");

    fx.advance(1_000);
    let refreshed = fx.refresh_as(&gateway, &pair.refresh_token).await.unwrap();
    let claims = fx.validate(&refreshed.access_token).unwrap().claims;
    assert_eq!(
        claims.client_id, "login-service",
        "the issuer's, not the refresher's"
    );
    assert_ne!(claims.jti, issued.jti);
    assert_eq!(claims.iat, (T0 + 1_000) / 1000);

    let listed = fx.list(&gateway, "acme", "alice", 0, "").await.unwrap();
    assert_eq!(listed.sessions[0].client_id, "login-service");
}

#[tokio::test]
async fn extra_claims_are_stored_and_copied_into_every_access_token() {
    let fx = Fixture::new().await;
    let mut extra = Map::new();
    extra.insert("org".into(), json!("r&d"));
    let pair = fx
        .authority
        .issue(
            &anonymous(),
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                extra_claims: extra.clone(),
                ..IssueRequest::default()
            },
        )
        .await
        .unwrap();
    let next = fx.refresh(&pair.refresh_token).await.unwrap();
    for token in [&pair.access_token, &next.access_token] {
        assert_eq!(fx.validate(token).unwrap().claims.extra, extra);
    }
}

#[tokio::test]
async fn a_refresh_rotates_and_a_lost_answer_may_be_retried_until_the_successor_is_used() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    fx.advance(1_000);

    let second = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.refresh_token_expires_at, T0 + 1_000 + IDLE_TTL);
    let s = fx.session(&first.session_id);
    assert_eq!(s.generation, 1);
    assert_eq!(s.token_digest, digest_of(&second.refresh_token).to_vec());
    assert_eq!(
        s.previous_digest,
        Some(digest_of(&first.refresh_token).to_vec())
    );
    assert_eq!(s.rotated_at, Some(T0 + 1_000));
    assert_eq!(s.last_used_at, T0 + 1_000);
    assert_eq!(s.idle_expires_at, T0 + 1_000 + IDLE_TTL);
    let refreshed = fx.store.audit_events_of_kind(AuditKind::Refreshed);
    assert_eq!(refreshed.len(), 1);
    assert_eq!(refreshed[0].detail.as_deref(), Some("generation 1"));

    // The first token again, within the window, its successor unused: the
    // same successor, and nothing changes.
    fx.advance(1_000);
    let before = fx.snapshot();
    let retried = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, second.refresh_token);
    assert_eq!(retried.session_id, first.session_id);
    assert_eq!(fx.snapshot(), before);
    fx.validate(&retried.access_token).unwrap();

    // The successor is used: the first token is now a replay.
    fx.advance(1_000);
    let third = fx.refresh(&second.refresh_token).await.unwrap();
    assert_eq!(fx.session(&first.session_id).generation, 2);
    fx.advance(1_000);
    assert_err!(fx.refresh(&first.refresh_token).await, Error::TokenReused);

    let s = fx.session(&first.session_id);
    assert_eq!(s.revoked_at, Some(T0 + 4_000));
    assert_eq!(
        s.revoke_reason.as_deref(),
        Some("refresh token reuse detected")
    );
    assert_eq!(s.revocation_seq, Some(1));
    assert_eq!(s.generation, 2);
    let reuse = fx.store.audit_events_of_kind(AuditKind::ReuseDetected);
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0].session_id.as_deref(), Some(&*first.session_id));
    assert_eq!(
        (reuse[0].at, reuse[0].detail.as_deref()),
        (T0 + 4_000, Some("refresh token reuse detected"))
    );
    let id = first.session_id.clone();
    assert_eq!(
        fx.session_events(),
        [
            (AuditKind::Issued, id.clone()),
            (AuditKind::Refreshed, id.clone()),
            (AuditKind::Refreshed, id.clone()),
            (AuditKind::ReuseDetected, id),
        ]
    );

    // Every token of the session is dead, at once on this replica.
    assert_err!(
        fx.refresh(&third.refresh_token).await,
        Error::SessionRevoked
    );
    assert_err!(
        fx.refresh(&first.refresh_token).await,
        Error::SessionRevoked
    );
    assert_err!(fx.validate(&third.access_token), Error::SessionRevoked);
    assert_err!(fx.validate(&second.access_token), Error::SessionRevoked);
    assert_eq!(
        fx.store
            .audit_events_of_kind(AuditKind::ReuseDetected)
            .len(),
        1
    );
}

#[tokio::test]
async fn a_token_two_generations_old_is_a_replay_even_within_the_window() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    let second = fx.refresh(&first.refresh_token).await.unwrap();
    let third = fx.refresh(&second.refresh_token).await.unwrap();
    fx.refresh(&third.refresh_token).await.unwrap();
    assert_err!(fx.refresh(&second.refresh_token).await, Error::TokenReused);
    assert!(fx.session(&first.session_id).revoked_at.is_some());
}

#[tokio::test]
async fn the_retry_window_runs_on_the_stores_clock() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    let second = fx.refresh(&first.refresh_token).await.unwrap();

    // The service's clock moves past the window, the store's does not: a
    // retry (this replica's clock is ahead, or it stalled).
    fx.clock.advance(millis(RETRY_WINDOW + 1));
    let retried = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, second.refresh_token);
    assert!(fx.session(&first.session_id).revoked_at.is_none());

    // The store's clock reaches the window's end: still a retry.
    fx.store_clock.advance(millis(RETRY_WINDOW));
    let retried = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, second.refresh_token);

    // One millisecond more on the store's clock only: a replay.
    fx.store_clock.advance(millis(1));
    assert_err!(fx.refresh(&first.refresh_token).await, Error::TokenReused);
    let s = fx.session(&first.session_id);
    assert_eq!(s.revoked_at, Some(T0 + RETRY_WINDOW + 1));
    assert_eq!(
        s.revoke_reason.as_deref(),
        Some("refresh token reuse detected")
    );
    assert_err!(
        fx.refresh(&second.refresh_token).await,
        Error::SessionRevoked
    );
}

#[tokio::test]
async fn the_store_stamps_rotations_with_its_own_clock() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    fx.store_clock.advance(millis(7_000));
    fx.refresh(&first.refresh_token).await.unwrap();
    let s = fx.session(&first.session_id);
    assert_eq!(s.rotated_at, Some(T0 + 7_000));
    assert_eq!(s.last_used_at, T0);
}

#[tokio::test]
async fn an_idle_session_expires_and_a_used_one_does_not() {
    let fx = Fixture::new().await;
    let used = fx.issue("acme", "alice").await;
    let idle = fx.issue("acme", "alice").await;
    fx.advance(IDLE_TTL - 1);
    let used = fx.refresh(&used.refresh_token).await.unwrap();
    fx.advance(1);
    let before = fx.snapshot();
    assert_err!(fx.refresh(&idle.refresh_token).await, Error::SessionExpired);
    assert_eq!(fx.snapshot(), before);
    assert_eq!(fx.session(&idle.session_id).revoked_at, None);
    fx.refresh(&used.refresh_token).await.unwrap();
    // Expired sessions are not listed.
    let page = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    let ids: Vec<_> = page.sessions.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(ids, [used.session_id]);
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_expiry_however_often_it_is_refreshed() {
    let fx = Fixture::new().await;
    let mut pair = fx.issue("acme", "alice").await;
    let step = IDLE_TTL - 600_000;
    while fx.authority.now() + step < T0 + ABSOLUTE_TTL - 60_000 {
        fx.advance(step);
        pair = fx.refresh(&pair.refresh_token).await.unwrap();
    }
    // A minute before the end: tokens do not outlive the session.
    let now = fx.authority.now();
    fx.advance(T0 + ABSOLUTE_TTL - 60_000 - now);
    pair = fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(pair.refresh_token_expires_at, T0 + ABSOLUTE_TTL);
    assert_eq!(pair.access_token_expires_at, T0 + ABSOLUTE_TTL);
    assert_eq!(fx.session(&pair.session_id).generation, 29);

    fx.advance(60_000);
    assert_err!(fx.refresh(&pair.refresh_token).await, Error::SessionExpired);
    assert_eq!(fx.session(&pair.session_id).generation, 29);
}

#[tokio::test]
async fn a_malformed_or_forged_refresh_token_is_refused_before_the_store() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    // One character changed inside the token's secret: the MAC fails.
    let mut forged = pair.refresh_token.clone().into_bytes();
    forged[60] = if forged[60] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    fx.store.set_unavailable(true);
    assert_err!(fx.refresh(&forged).await, Error::TokenInvalid);
    assert_err!(fx.refresh("rt1_nonsense").await, Error::TokenInvalid);
    assert_err!(fx.refresh("").await, Error::InvalidArgument { .. });
}

#[tokio::test]
async fn a_refresh_token_of_another_authority_is_invalid() {
    let fx = Fixture::new().await;
    let other = Fixture::new().await;
    let pair = other.issue("acme", "alice").await;
    assert_err!(fx.refresh(&pair.refresh_token).await, Error::TokenInvalid);
    // Nor do its access tokens validate here (another key).
    assert_err!(fx.validate(&pair.access_token), Error::TokenInvalid);
}

#[tokio::test]
async fn refreshes_are_audited_only_when_configured() {
    let fx = Fixture::with(|s| s.audit_refreshes = false).await;
    let first = fx.issue("acme", "alice").await;
    fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(fx.session(&first.session_id).generation, 1);
    assert!(fx
        .store
        .audit_events_of_kind(AuditKind::Refreshed)
        .is_empty());
}

#[tokio::test]
async fn refreshes_of_one_session_are_rate_limited() {
    let fx = Fixture::with(|s| {
        s.refresh_per_session = Some(Rate {
            count: NonZeroU32::new(2).unwrap(),
            per: Duration::from_secs(60),
        })
    })
    .await;
    let a = fx.issue("acme", "alice").await;
    let b = fx.issue("acme", "alice").await;
    let a = fx.refresh(&a.refresh_token).await.unwrap();
    let a = fx.refresh(&a.refresh_token).await.unwrap();
    let before = fx.snapshot();
    assert_err!(
        fx.refresh(&a.refresh_token).await,
        Error::RateLimited { .. }
    );
    assert_eq!(fx.snapshot(), before);
    // Another session has its own allowance; time restores this one's.
    fx.refresh(&b.refresh_token).await.unwrap();
    fx.advance(30_000);
    fx.refresh(&a.refresh_token).await.unwrap();
}
