//! Revocation by session, token and subject; tenants; the session cap.
use super::*;

#[tokio::test]
async fn revoking_a_session_by_id_ends_it_once() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let other = fx.issue("acme", "alice").await;
    fx.advance(1_000);
    let revoked = fx
        .revoke(&anonymous(), "acme", session_target(&pair), "lost laptop")
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    let s = fx.session(&pair.session_id);
    assert_eq!(s.revoked_at, Some(T0 + 1_000));
    assert_eq!(
        s.revoke_reason.as_deref(),
        Some("lost laptop (by anonymous)")
    );
    assert_eq!(s.revocation_seq, Some(1));
    let events = fx.store.audit_events_of_kind(AuditKind::Revoked);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].session_id.as_deref(), Some(&*pair.session_id));
    assert_eq!(
        events[0].detail.as_deref(),
        Some("lost laptop (by anonymous)")
    );

    assert_err!(fx.validate(&pair.access_token), Error::SessionRevoked);
    assert_err!(fx.refresh(&pair.refresh_token).await, Error::SessionRevoked);
    fx.validate(&other.access_token).unwrap();

    // Again: nothing to do, nothing recorded.
    let before = fx.snapshot();
    let again = fx
        .revoke(&anonymous(), "acme", session_target(&pair), "")
        .await;
    assert_eq!(again.unwrap(), 0);
    assert_eq!(fx.snapshot(), before);
}

#[tokio::test]
async fn revoking_an_unknown_session_or_one_of_another_tenant_finds_nothing() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let before = fx.snapshot();
    let unknown = RevokeTarget::Session(Uuid::now_v7().to_string());
    assert_err!(
        fx.revoke(&anonymous(), "acme", unknown, "").await,
        Error::SessionNotFound
    );
    assert_err!(
        fx.revoke(&anonymous(), "globex", session_target(&pair), "")
            .await,
        Error::SessionNotFound
    );
    let garbled = RevokeTarget::Session("not-a-uuid".into());
    assert_err!(
        fx.revoke(&anonymous(), "acme", garbled, "").await,
        Error::InvalidArgument { .. }
    );
    assert_err!(
        fx.authority
            .revoke(
                &anonymous(),
                RevokeRequest {
                    tenant_id: "acme".into(),
                    target: None,
                    reason: String::new(),
                },
            )
            .await,
        Error::InvalidArgument { .. }
    );
    assert_eq!(fx.snapshot(), before);
    fx.validate(&pair.access_token).unwrap();
}

#[tokio::test]
async fn revoking_by_refresh_token_ends_its_session() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    let second = fx.refresh(&first.refresh_token).await.unwrap();
    let target = RevokeTarget::RefreshToken(second.refresh_token.clone());
    assert_eq!(fx.revoke(&anonymous(), "", target, "").await.unwrap(), 1);
    let s = fx.session(&first.session_id);
    assert_eq!(s.revoke_reason.as_deref(), Some("revoked by anonymous"));
    assert_err!(fx.validate(&second.access_token), Error::SessionRevoked);
    assert_err!(
        fx.refresh(&second.refresh_token).await,
        Error::SessionRevoked
    );
    // With a tenant that is not the session's: not found.
    let other = fx.issue("acme", "bob").await;
    let target = RevokeTarget::RefreshToken(other.refresh_token.clone());
    assert_err!(
        fx.revoke(&anonymous(), "globex", target, "").await,
        Error::SessionNotFound
    );
    assert_eq!(fx.session(&other.session_id).revoked_at, None);
    // A forged token revokes nothing.
    let forged = RevokeTarget::RefreshToken(format!("{}x", &other.refresh_token[..60]));
    assert_err!(
        fx.revoke(&anonymous(), "", forged, "").await,
        Error::TokenInvalid
    );
    assert_eq!(fx.session(&other.session_id).revoked_at, None);
}

#[tokio::test]
async fn revoking_a_subject_ends_its_live_sessions_in_that_tenant_only() {
    let fx = Fixture::new().await;
    let a1 = fx.issue("acme", "alice").await;
    let a2 = fx.issue("acme", "alice").await;
    let a3 = fx.issue("acme", "alice").await;
    let bob = fx.issue("acme", "bob").await;
    let elsewhere = fx.issue("globex", "alice").await;
    // One already revoked: not counted again.
    fx.revoke(&anonymous(), "acme", session_target(&a3), "")
        .await
        .unwrap();
    fx.advance(1_000);

    let all = RevokeTarget::AllSessions {
        subject: "alice".into(),
    };
    let n = fx
        .revoke(&anonymous(), "acme", all.clone(), "offboarded")
        .await;
    assert_eq!(n.unwrap(), 2);
    for pair in [&a1, &a2] {
        let s = fx.session(&pair.session_id);
        assert_eq!(s.revoked_at, Some(T0 + 1_000));
        assert_eq!(
            s.revoke_reason.as_deref(),
            Some("offboarded (by anonymous)")
        );
        assert_eq!(s.revocation_seq, Some(2));
        assert_err!(fx.validate(&pair.access_token), Error::SessionRevoked);
    }
    assert_eq!(fx.session(&a3.session_id).revoked_at, Some(T0));
    let revoked: Vec<_> = fx
        .store
        .audit_events_of_kind(AuditKind::Revoked)
        .into_iter()
        .map(|e| e.session_id.unwrap())
        .collect();
    assert_eq!(
        revoked,
        [
            a3.session_id.clone(),
            a1.session_id.clone(),
            a2.session_id.clone()
        ]
    );
    fx.refresh(&bob.refresh_token).await.unwrap();
    fx.refresh(&elsewhere.refresh_token).await.unwrap();
    fx.validate(&bob.access_token).unwrap();
    fx.validate(&elsewhere.access_token).unwrap();

    assert_eq!(fx.revoke(&anonymous(), "acme", all, "").await.unwrap(), 0);
}

#[tokio::test]
async fn a_caller_limited_to_other_tenants_changes_nothing() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let outsider = limited_to("globex-admin", &["globex"]);
    let before = fx.snapshot();

    assert_err!(
        fx.try_issue(&outsider, "acme", "alice").await,
        Error::TenantNotPermitted
    );
    assert_err!(
        fx.refresh_as(&outsider, &pair.refresh_token).await,
        Error::TenantNotPermitted
    );
    for tenant in ["acme", ""] {
        let target = RevokeTarget::RefreshToken(pair.refresh_token.clone());
        assert_err!(
            fx.revoke(&outsider, tenant, target, "").await,
            Error::TenantNotPermitted
        );
    }
    assert_err!(
        fx.revoke(&outsider, "acme", session_target(&pair), "")
            .await,
        Error::TenantNotPermitted
    );
    // Naming its own tenant does not reach the session of another.
    assert_err!(
        fx.revoke(&outsider, "globex", session_target(&pair), "")
            .await,
        Error::SessionNotFound
    );
    let all = RevokeTarget::AllSessions {
        subject: "alice".into(),
    };
    assert_err!(
        fx.revoke(&outsider, "acme", all, "").await,
        Error::TenantNotPermitted
    );
    assert_err!(
        fx.list(&outsider, "acme", "alice", 0, "").await,
        Error::TenantNotPermitted
    );
    assert_err!(
        validate(&fx.authority, &outsider, &pair.access_token),
        Error::TenantNotPermitted
    );
    assert_eq!(fx.snapshot(), before);

    // The owner's token still works, at the generation it had.
    let insider = limited_to("acme-app", &["acme", "initech"]);
    validate(&fx.authority, &insider, &pair.access_token).unwrap();
    let next = fx.refresh_as(&insider, &pair.refresh_token).await.unwrap();
    assert_eq!(fx.session(&pair.session_id).generation, 1);
    // A replay by an outsider is refused as such: it cannot get the
    // session revoked for reuse.
    fx.advance(RETRY_WINDOW + 1);
    let before = fx.snapshot();
    assert_err!(
        fx.refresh_as(&outsider, &pair.refresh_token).await,
        Error::TenantNotPermitted
    );
    assert_eq!(fx.snapshot(), before);
    let page = fx.list(&insider, "acme", "alice", 0, "").await.unwrap();
    assert_eq!(page.sessions.len(), 1);
    let target = RevokeTarget::RefreshToken(next.refresh_token.clone());
    assert_eq!(fx.revoke(&insider, "", target, "").await.unwrap(), 1);
    let issued_by = fx.try_issue(&insider, "initech", "carol").await.unwrap();
    let event = fx.store.audit_events().pop().unwrap();
    assert_eq!(event.session_id.as_deref(), Some(&*issued_by.session_id));
    assert_eq!(event.detail.as_deref(), Some("by acme-app"));
}

#[tokio::test]
async fn the_session_cap_evicts_the_least_recently_used_session_once_it_is_old_enough() {
    let fx = Fixture::with(|s| s.max_sessions_per_subject = 2).await;
    let s1 = fx.issue("acme", "alice").await;
    let s2 = fx.issue("acme", "alice").await;

    // Both are younger than an access token's lifetime: none may go yet.
    let before = fx.snapshot();
    assert_err!(
        fx.try_issue(&anonymous(), "acme", "alice").await,
        Error::SessionLimit { retry_after } if retry_after == millis(EVICTABLE_AGE + 1)
    );
    assert_eq!(fx.snapshot(), before);
    // Another subject, or another tenant, has a cap of its own.
    fx.issue("acme", "bob").await;
    fx.issue("globex", "alice").await;
    fx.advance(EVICTABLE_AGE);
    // One millisecond to go: the hint is at least a second.
    assert_err!(
        fx.try_issue(&anonymous(), "acme", "alice").await,
        Error::SessionLimit { retry_after } if retry_after == Duration::from_secs(1)
    );

    fx.advance(1);
    let s1 = fx.refresh(&s1.refresh_token).await.unwrap();
    fx.advance(1_000);
    let s2 = fx.refresh(&s2.refresh_token).await.unwrap();
    let evicted_at = fx.authority.now();
    let s3 = fx.issue("acme", "alice").await;

    // `s1` was used least recently.
    let victim = fx.session(&s1.session_id);
    assert_eq!(victim.revoked_at, Some(evicted_at));
    assert_eq!(
        victim.revoke_reason.as_deref(),
        Some("evicted: more than 2 sessions")
    );
    assert!(victim.revocation_seq.is_some());
    let evicted = fx.store.audit_events_of_kind(AuditKind::Evicted);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].session_id.as_deref(), Some(&*s1.session_id));
    assert_eq!(
        evicted[0].detail,
        Some(format!(
            "evicted: more than 2 sessions; for session {}",
            s3.session_id
        ))
    );
    assert_err!(fx.validate(&s1.access_token), Error::SessionRevoked);
    assert_err!(fx.refresh(&s1.refresh_token).await, Error::SessionRevoked);
    fx.validate(&s2.access_token).unwrap();
    fx.validate(&s3.access_token).unwrap();
    let page = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    let ids: Vec<_> = page.sessions.into_iter().map(|s| s.session_id).collect();
    assert_eq!(ids, [s2.session_id, s3.session_id]);
}
