//! A token or id of tenant A never validates, lists or revokes anything of tenant B.
use tonic::Code;

use crate::common::*;
use token_authority::proto::{self as pb, revoke_request::Target};

async fn tenants_are_isolated(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    let a = server.issue("tenant-a", "alice").await;
    let b = server.issue("tenant-b", "alice").await;

    // Validate: a sidecar of tenant B rejects tenant A's token.
    let result = client
        .validate(pb::ValidateRequest {
            access_token: a.access_token.clone(),
            expected_tenant_id: "tenant-b".into(),
            ..Default::default()
        })
        .await;
    assert_error(result, Code::PermissionDenied, "TENANT_MISMATCH");

    // ListSessions: same subject name, different tenants, separate lists.
    let listed = server.list("tenant-a", "alice").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session_id, a.session_id);

    // Revoke by session id under the wrong tenant: not found, nothing revoked.
    let result = client
        .revoke(pb::RevokeRequest {
            tenant_id: "tenant-b".into(),
            target: Some(Target::SessionId(a.session_id.clone())),
            reason: String::new(),
        })
        .await;
    assert_error(result, Code::NotFound, "SESSION_NOT_FOUND");
    // By refresh token under the wrong tenant: same.
    let result = client
        .revoke(pb::RevokeRequest {
            tenant_id: "tenant-b".into(),
            target: Some(Target::RefreshToken(a.refresh_token.clone())),
            reason: String::new(),
        })
        .await;
    assert_error(result, Code::NotFound, "SESSION_NOT_FOUND");
    // All sessions of "alice" in tenant B leaves tenant A's alice alone.
    let revoked = client
        .revoke(pb::RevokeRequest {
            tenant_id: "tenant-b".into(),
            target: Some(Target::AllSessions(pb::SubjectSessions {
                subject: "alice".into(),
            })),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_sessions, 1);
    assert_error(
        server.validate(&b.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    server.validate(&a.access_token).await.unwrap();
    server.refresh(&a.refresh_token).await.unwrap();
}

async fn audience_is_checked_when_asked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let result = server
        .client()
        .validate(pb::ValidateRequest {
            access_token: pair.access_token.clone(),
            expected_audience: "billing".into(),
            ..Default::default()
        })
        .await;
    assert_error(result, Code::PermissionDenied, "AUDIENCE_MISMATCH");
}

crate::on_both_backends!(tenants_are_isolated, audience_is_checked_when_asked,);
