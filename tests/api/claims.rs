//! Access tokens carry RFC 9068's claims: `client_id` is the caller that
//! issued the session, whoever refreshes it; `jti` is new for every token;
//! `iat` is when the token was minted. Validate and ListSessions show the
//! client id too.
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use token_authority::access::Permission;
use token_authority::proto as pb;
use token_authority::verify::clock::Clock;

async fn client_id_is_the_issuer_for_every_token_of_a_session(backend: Backend) {
    let login = TestCaller::new("login-service", &[Permission::Issue], &["acme"]);
    let gateway = TestCaller::new(
        "gateway",
        &[
            Permission::Refresh,
            Permission::Validate,
            Permission::ListSessions,
        ],
        &["acme"],
    );
    let server = TestServer::start_with(backend, |config| {
        config.auth.callers = vec![login.config.clone(), gateway.config.clone()];
    })
    .await;
    let mut client = server.client();

    let issued = client
        .issue(login.request(issue_request("acme", "alice")))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let first = access_token_payload(&issued.access_token);
    assert_eq!(first["client_id"], "login-service", "{first:?}");
    assert_iat_is_now(&server, &first);

    server.clock.advance(Duration::from_secs(2));
    let refreshed = client
        .refresh(gateway.request(pb::RefreshRequest {
            refresh_token: issued.refresh_token.clone(),
            device: None,
            binding: None,
        }))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let second = access_token_payload(&refreshed.access_token);
    assert_eq!(
        second["client_id"], "login-service",
        "the session's issuer, not the refresher: {second:?}"
    );
    assert_ne!(second["jti"], first["jti"], "a new jti for every token");
    assert_iat_is_now(&server, &second);
    assert!(second["iat"].as_i64() > first["iat"].as_i64());

    for token in [&issued.access_token, &refreshed.access_token] {
        let claims = client
            .validate(gateway.request(pb::ValidateRequest {
                access_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .claims
            .unwrap();
        assert_eq!(claims.client_id, "login-service");
        // client_id is a claim of its own, not one of the extra claims.
        assert!(claims.extra_claims.is_none(), "{claims:?}");
    }

    let sessions = client
        .list_sessions(gateway.request(pb::ListSessionsRequest {
            tenant_id: "acme".into(),
            subject: "alice".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].client_id, "login-service");
}

/// `iat` is the server clock's second when the token was minted.
fn assert_iat_is_now(server: &TestServer, claims: &serde_json::Map<String, Value>) {
    let now = server.clock.now_millis() / 1000;
    let iat = claims["iat"].as_i64().expect("iat is a number");
    assert!((now - 1..=now).contains(&iat), "iat {iat}, now {now}");
    assert_eq!(claims["nbf"], claims["iat"]);
}

/// Without authentication the caller is `anonymous`, and a client cannot
/// pass a client_id of its own as an extra claim.
async fn client_id_is_anonymous_without_authentication_and_reserved(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    assert_eq!(
        access_token_payload(&pair.access_token)["client_id"],
        "anonymous"
    );
    assert_eq!(
        server.validate(&pair.access_token).await.unwrap().client_id,
        "anonymous"
    );

    let mut request = issue_request("acme", "bob");
    request.extra_claims = Some(prost_types::Struct {
        fields: [(
            "client_id".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("someone-else".into())),
            },
        )]
        .into(),
    });
    assert_invalid(server.client().issue(request).await, "extra_claims");
}

crate::on_both_backends!(
    client_id_is_the_issuer_for_every_token_of_a_session,
    client_id_is_anonymous_without_authentication_and_reserved,
);
