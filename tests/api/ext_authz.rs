//! Envoy external authorization: allowed requests go upstream with the
//! token's identity; denied ones get 401/403 and a WWW-Authenticate
//! challenge (RFC 6750).
use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};

use crate::common::*;

/// A CheckRequest as Envoy sends it.
pub fn check_request(headers: &[(&str, &str)], context: &[(&str, &str)]) -> CheckRequest {
    let mut request = CheckRequest::default();
    let attributes = request.attributes.get_or_insert_with(Default::default);
    for (k, v) in context {
        attributes
            .context_extensions
            .insert((*k).into(), (*v).into());
    }
    let http = attributes
        .request
        .get_or_insert_with(Default::default)
        .http
        .get_or_insert_with(Default::default);
    http.method = "GET".into();
    http.path = "/api/things".into();
    for (k, v) in headers {
        http.headers.insert((*k).into(), (*v).into());
    }
    request
}

async fn check(server: &TestServer, request: CheckRequest) -> CheckResponse {
    server
        .authz_client()
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

/// `(gRPC code, HTTP status, WWW-Authenticate)` of a denial.
fn denial(response: &CheckResponse) -> (i32, i32, String) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not denied: {response:?}")
    };
    let challenge = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone())
        .expect("a challenge");
    (
        response.status.as_ref().map_or(0, |s| s.code),
        denied.status.as_ref().map_or(0, |s| s.code),
        challenge,
    )
}

async fn allowed_requests_carry_the_tokens_identity_upstream(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    for (name, scheme) in [("authorization", "Bearer"), ("Authorization", "bearer")] {
        let value = format!("{scheme} {}", pair.access_token);
        let response = check(
            &server,
            check_request(
                &[(name, &value)],
                &[("audience", "api"), ("tenant", "acme")],
            ),
        )
        .await;
        assert_eq!(response.status.as_ref().map_or(-1, |s| s.code), 0);
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("not allowed: {:?}", response.http_response)
        };
        let headers: HashMap<String, String> = ok
            .headers
            .iter()
            .map(|h| {
                // Replace what a client may have sent, on every Envoy version.
                #[allow(deprecated)]
                let append = h.append.as_ref().map(|a| a.value);
                assert_eq!(append, Some(false));
                assert_eq!(
                    h.append_action,
                    HeaderAppendAction::OverwriteIfExistsOrAdd as i32
                );
                let header = h.header.as_ref().unwrap();
                (header.key.clone(), header.value.clone())
            })
            .collect();
        assert_eq!(headers["x-auth-subject"], "alice");
        assert_eq!(headers["x-auth-tenant"], "acme");
        assert_eq!(headers["x-auth-scopes"], "read write");
        assert_eq!(headers["x-auth-session-id"], pair.session_id);
    }
}

async fn denied_requests_get_a_challenge(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let bearer = format!("Bearer {}", pair.access_token);
    let realm = "Bearer realm=\"token-authority\"";

    let none = check(&server, check_request(&[], &[])).await;
    assert_eq!(
        denial(&none),
        (16, 401, realm.to_owned()),
        "no token: bare challenge"
    );
    let basic = check(
        &server,
        check_request(&[("authorization", "Basic YTpi")], &[]),
    )
    .await;
    assert_eq!(
        denial(&basic),
        (16, 401, realm.to_owned()),
        "another scheme: no bearer credentials"
    );
    let empty = check(&server, check_request(&[("authorization", "Bearer ")], &[])).await;
    assert_eq!(
        denial(&empty),
        (
            16,
            401,
            format!("{realm}, error=\"invalid_request\", error_description=\"INVALID_ARGUMENT\"")
        )
    );
    let forged = check(
        &server,
        check_request(&[("authorization", "Bearer x.y.z")], &[]),
    )
    .await;
    assert_eq!(
        denial(&forged),
        (
            16,
            401,
            format!("{realm}, error=\"invalid_token\", error_description=\"TOKEN_INVALID\"")
        )
    );
    let audience = check(
        &server,
        check_request(&[("authorization", &bearer)], &[("audience", "billing")]),
    )
    .await;
    assert_eq!(
        denial(&audience),
        (
            7,
            403,
            format!(
                "{realm}, error=\"insufficient_scope\", error_description=\"AUDIENCE_MISMATCH\""
            )
        )
    );
    let tenant = check(
        &server,
        check_request(&[("authorization", &bearer)], &[("tenant", "globex")]),
    )
    .await;
    assert_eq!(denial(&tenant).1, 403);

    server.revoke("acme", &pair.session_id).await;
    let revoked = check(&server, check_request(&[("authorization", &bearer)], &[])).await;
    assert!(denial(&revoked)
        .2
        .ends_with("error_description=\"SESSION_REVOKED\""));

    let fresh = server.issue("acme", "bob").await;
    server.clock.advance(Duration::from_secs(16 * 60));
    let expired = check(
        &server,
        check_request(
            &[("authorization", &format!("Bearer {}", fresh.access_token))],
            &[],
        ),
    )
    .await;
    assert_eq!(
        denial(&expired),
        (
            16,
            401,
            format!("{realm}, error=\"invalid_token\", error_description=\"TOKEN_EXPIRED\"")
        )
    );
}

crate::on_both_backends!(
    allowed_requests_carry_the_tokens_identity_upstream,
    denied_requests_get_a_challenge,
);
