use std::time::Duration;

use futures::StreamExt;
use tonic::Code;

use crate::common::*;
use token_authority::proto::{self as pb, revoke_request::Target};

async fn issue_validate_refresh_list_revoke(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();

    let mut request = issue_request("acme", "alice");
    request.extra_claims = Some(prost_types::Struct {
        fields: [(
            "roles".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("admin".into())),
            },
        )]
        .into(),
    });
    let first = client
        .issue(request)
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(first.token_type, "Bearer");
    assert!(first.refresh_token.starts_with("rt1_"));

    let claims = client
        .validate(pb::ValidateRequest {
            access_token: first.access_token.clone(),
            expected_audience: "api".into(),
            expected_tenant_id: "acme".into(),
            presenter_certificate_thumbprint: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(claims.valid);
    let claims = claims.claims.unwrap();
    assert_eq!(claims.subject, "alice");
    assert_eq!(claims.tenant_id, "acme");
    assert_eq!(claims.audience, "api");
    assert_eq!(claims.scopes, vec!["read", "write"]);
    assert_eq!(claims.session_id, first.session_id);
    assert_eq!(claims.issuer, "token-authority");
    assert!(!claims.key_id.is_empty());
    let extra = claims.extra_claims.unwrap();
    assert_eq!(
        extra.fields["roles"].kind,
        Some(prost_types::value::Kind::StringValue("admin".into()))
    );

    // Refresh rotates: a new pair for the same session, with device updates.
    server.clock.advance(Duration::from_secs(60));
    let second = client
        .refresh(pb::RefreshRequest {
            refresh_token: first.refresh_token.clone(),
            device: Some(pb::Device {
                ip: "198.51.100.7".into(),
                ..Default::default()
            }),
            binding: None,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    let claims = server.validate(&second.access_token).await.unwrap();
    assert_eq!(claims.extra_claims.unwrap().fields.len(), 1);

    let sessions = server.list("acme", "alice").await;
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.session_id, first.session_id);
    assert_eq!(s.refresh_count, 1);
    let device = s.device.clone().unwrap();
    assert_eq!(device.name, "laptop");
    assert_eq!(device.user_agent, "Mozilla/5.0 (test)");
    assert_eq!(device.ip, "198.51.100.7");
    assert_eq!(s.scopes, vec!["read", "write"]);
    assert!(s.last_used_at.as_ref().unwrap().seconds > s.created_at.as_ref().unwrap().seconds);
    assert_eq!(s.expires_at, second.refresh_token_expires_at);

    // Revoking the session kills its access tokens at once and its refresh token.
    let revoked = client
        .revoke(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(Target::SessionId(first.session_id.clone())),
            reason: "user logged out".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_sessions, 1);
    assert_error(
        server.validate(&second.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.validate(&first.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert!(server.list("acme", "alice").await.is_empty());

    // Revoking again is idempotent.
    let again = client
        .revoke(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(Target::SessionId(first.session_id.clone())),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revoked_sessions, 0);
}

async fn revoke_by_refresh_token_and_all_sessions_of_a_subject(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    let a = server.issue("acme", "bob").await;
    let b = server.issue("acme", "bob").await;
    let c = server.issue("acme", "bob").await;
    let other = server.issue("acme", "carol").await;

    let one = client
        .revoke(pb::RevokeRequest {
            tenant_id: String::new(),
            target: Some(Target::RefreshToken(a.refresh_token.clone())),
            reason: "logout".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.revoked_sessions, 1);
    assert_error(
        server.validate(&a.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    server.validate(&b.access_token).await.unwrap();

    let all = client
        .revoke(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(Target::AllSessions(pb::SubjectSessions {
                subject: "bob".into(),
            })),
            reason: "log out everywhere".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.revoked_sessions, 2, "a was already revoked");
    for pair in [&b, &c] {
        assert_error(
            server.validate(&pair.access_token).await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
        assert_error(
            server.refresh(&pair.refresh_token).await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
    }
    assert!(server.list("acme", "bob").await.is_empty());
    // Another subject is untouched.
    server.validate(&other.access_token).await.unwrap();
    server.refresh(&other.refresh_token).await.unwrap();
}

async fn list_sessions_pages_through_every_session_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut issued = Vec::new();
    for _ in 0..7 {
        issued.push(server.issue("acme", "dave").await.session_id);
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = server
            .client()
            .list_sessions(pb::ListSessionsRequest {
                tenant_id: "acme".into(),
                subject: "dave".into(),
                page_size: 3,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.sessions.len() <= 3);
        seen.extend(page.sessions.into_iter().map(|s| s.session_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, issued, "oldest first, each once");
}

async fn sessions_keys_and_secrets_survive_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "erin").await;
    let server = server.restart().await;
    let claims = server.validate(&pair.access_token).await.unwrap();
    assert_eq!(claims.subject, "erin");
    let next = server.refresh(&pair.refresh_token).await.unwrap();
    server.validate(&next.access_token).await.unwrap();

    // A revocation made before a restart is still enforced after it.
    server
        .client()
        .revoke(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(Target::SessionId(pair.session_id.clone())),
            reason: String::new(),
        })
        .await
        .unwrap();
    let server = server.restart().await;
    assert_error(
        server.validate(&next.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

async fn refresh_does_not_add_rows(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "frank").await;
    server.issue("acme", "grace").await;
    assert_eq!(server.session_rows().await, 2);
    let mut token = pair.refresh_token;
    for _ in 0..25 {
        server.clock.advance(Duration::from_secs(30));
        token = server.refresh(&token).await.unwrap().refresh_token;
    }
    assert_eq!(server.session_rows().await, 2, "rotation is in place");
    assert_eq!(server.list("acme", "frank").await[0].refresh_count, 25);
}

async fn every_rotation_is_audited_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.issue("acme", "gina").await;
    let second = server.refresh(&first.refresh_token).await.unwrap();
    // A repeat within the grace window rotates nothing, so it audits nothing.
    server.refresh(&first.refresh_token).await.unwrap();
    server.clock.advance(Duration::from_secs(60));
    server.refresh(&second.refresh_token).await.unwrap();
    server.clock.advance(Duration::from_secs(60));
    assert_error(
        server.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );

    let trail = server.store.audit_trail(&first.session_id).await.unwrap();
    let kinds: Vec<(&str, Option<&str>)> = trail
        .iter()
        .map(|e| (e.kind.as_str(), e.detail.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("issued", Some("by anonymous")),
            ("refreshed", Some("generation 1")),
            ("refreshed", Some("generation 2")),
            ("reuse_detected", Some("refresh token reuse detected")),
        ]
    );
    assert!(trail
        .iter()
        .all(|e| e.tenant_id == "acme" && e.subject == "gina"));
}

async fn log_out_everywhere_handles_many_sessions(backend: Backend) {
    const SESSIONS: usize = 1100;
    // Far more sessions than the per-subject cap allows by default.
    let server = TestServer::start_with(backend, |c| c.limits.max_sessions_per_subject = 0).await;
    // 32 at a time: enough to be quick, not a test of the pool under load.
    let issued: Vec<_> = futures::stream::iter((0..SESSIONS).map(|_| {
        let mut client = server.client();
        async move { issue_with(&mut client, "acme", "many").await }
    }))
    .buffered(32)
    .collect()
    .await;
    let request = pb::RevokeRequest {
        tenant_id: "acme".into(),
        target: Some(Target::AllSessions(pb::SubjectSessions {
            subject: "many".into(),
        })),
        reason: "everywhere".into(),
    };
    let revoked = server
        .client()
        .revoke(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_sessions as usize, SESSIONS);
    assert!(server.list("acme", "many").await.is_empty());
    for pair in [&issued[0], &issued[SESSIONS / 2], &issued[SESSIONS - 1]] {
        assert_error(
            server.validate(&pair.access_token).await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
    }
    let again = server.client().revoke(request).await.unwrap().into_inner();
    assert_eq!(again.revoked_sessions, 0);
}

crate::on_both_backends!(
    log_out_everywhere_handles_many_sessions,
    every_rotation_is_audited_once,
    issue_validate_refresh_list_revoke,
    revoke_by_refresh_token_and_all_sessions_of_a_subject,
    list_sessions_pages_through_every_session_once,
    sessions_keys_and_secrets_survive_a_restart,
    refresh_does_not_add_rows,
);
