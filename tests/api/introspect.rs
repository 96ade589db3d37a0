//! RFC 7662 introspection, `POST /oauth2/introspect`: active tokens show
//! their claims; every other token is exactly `{"active":false}`, tenants
//! the caller may not see included; callers authenticate like OAuth
//! clients.
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::common::*;
use token_authority::access::Permission;
use token_authority::proto as pb;

const PATH: &str = "/oauth2/introspect";

crate::on_both_backends!(introspection_answers_from_memory_and_tells_nothing_of_bad_tokens);

async fn introspection_answers_from_memory_and_tells_nothing_of_bad_tokens(backend: Backend) {
    let introspector = TestCaller::new("introspector", &[Permission::Introspect], &["*"]);
    let validator = TestCaller::new("validator", &[Permission::Validate], &["*"]);
    let acme_only = TestCaller::new("acme-only", &[Permission::Introspect], &["acme"]);
    let issuer = TestCaller::new("issuer", &[Permission::Issue], &["*"]);
    let admin = TestCaller::new("admin", &[Permission::All], &["*"]);
    let server = TestServer::start_with(backend, |config| {
        config.auth.callers = [&introspector, &validator, &acme_only, &issuer, &admin]
            .iter()
            .map(|c| c.config.clone())
            .collect();
    })
    .await;
    let issue = |tenant: &'static str, subject: &'static str| {
        let mut client = server.client();
        let request = admin.request(issue_request(tenant, subject));
        async move {
            let response = client.issue(request).await.unwrap().into_inner();
            response.tokens.unwrap()
        }
    };
    let alice = issue("acme", "alice").await;
    let bob = issue("globex", "bob").await;
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("introspector:{}", introspector.key))
    );
    let introspect = |token: &str, auth: &[(&str, &str)]| {
        let form = format!("token={token}&token_type_hint=access_token");
        let auth: Vec<(String, String)> = auth
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let addr = server.http_addr;
        async move {
            let auth: Vec<(&str, &str)> =
                auth.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            http_post_form(addr, PATH, &auth, &form).await
        }
    };
    let as_introspector = [("Authorization", basic.as_str())];
    let inactive = serde_json::json!({ "active": false });

    // Active, by Basic (client_secret_basic).
    let active = introspect(&alice.access_token, &as_introspector).await;
    assert_eq!(active.status, 200, "{active:?}");
    assert_eq!(active.header("cache-control"), Some("no-store"));
    let claims = active.json();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["aud"], "api");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["sid"], alice.session_id.as_str());
    assert_eq!(claims["token_type"], "Bearer");
    assert_eq!(claims["iss"], server.config.tokens.issuer.as_str());
    for number in ["exp", "iat", "nbf"] {
        assert!(claims[number].is_i64(), "{number}: {claims}");
    }
    assert!(claims["jti"].is_string(), "{claims}");
    // RFC 7662 client_id: the caller that issued the session.
    assert_eq!(claims["client_id"], "admin");
    assert!(claims.get("act").is_none(), "{claims}");

    // By a bearer key (RFC 7662 §2.1), with Validate.
    let bearer = format!("Bearer {}", validator.key);
    let by_bearer = introspect(&alice.access_token, &[("Authorization", &bearer)]).await;
    assert_eq!(by_bearer.json()["active"], true, "{by_bearer:?}");
    // In the form (client_secret_post).
    let posted = http_post_form(
        server.http_addr,
        PATH,
        &[],
        &format!(
            "token={}&client_id=introspector&client_secret={}",
            alice.access_token, introspector.key
        ),
    )
    .await;
    assert_eq!(posted.json()["active"], true, "{posted:?}");

    // Another tenant's token, for a caller of acme only: nothing to learn.
    let acme_bearer = format!("Bearer {}", acme_only.key);
    let other = introspect(&bob.access_token, &[("Authorization", &acme_bearer)]).await;
    assert_eq!((other.status, other.json()), (200, inactive.clone()));
    let own = introspect(&alice.access_token, &[("Authorization", &acme_bearer)]).await;
    assert_eq!(own.json()["active"], true);

    // Garbage, a refresh token, a wrongly signed token.
    let mut forged = alice.access_token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    for token in ["garbage", &alice.refresh_token, &forged] {
        let answer = introspect(token, &as_introspector).await;
        assert_eq!((answer.status, answer.json()), (200, inactive.clone()));
    }

    // Revoked.
    let mut client = server.client();
    client
        .revoke(admin.request(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(pb::revoke_request::Target::SessionId(
                alice.session_id.clone(),
            )),
            reason: "test".into(),
        }))
        .await
        .unwrap();
    let revoked = introspect(&alice.access_token, &as_introspector).await;
    assert_eq!((revoked.status, revoked.json()), (200, inactive.clone()));

    // Expired (past the leeway).
    server
        .clock
        .advance(Duration::from_secs(15 * 60) + LEEWAY + Duration::from_secs(1));
    let expired = introspect(&bob.access_token, &as_introspector).await;
    assert_eq!((expired.status, expired.json()), (200, inactive.clone()));

    // Callers.
    let wrong = format!("Basic {}", STANDARD.encode("introspector:tak_wrong"));
    let refused = introspect(&bob.access_token, &[("Authorization", &wrong)]).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(refused.json()["error"], "invalid_client");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"token-authority\"")
    );
    let anonymous = introspect(&bob.access_token, &[]).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let issuer_bearer = format!("Bearer {}", issuer.key);
    let forbidden = introspect(&bob.access_token, &[("Authorization", &issuer_bearer)]).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.json()["error"], "unauthorized_client");

    // Malformed requests.
    let no_token = http_post_form(
        server.http_addr,
        PATH,
        &as_introspector,
        "token_type_hint=access_token",
    )
    .await;
    assert_eq!(no_token.status, 400);
    assert_eq!(no_token.json()["error"], "invalid_request");
    let twice = http_post_form(server.http_addr, PATH, &as_introspector, "token=a&token=b").await;
    assert_eq!(
        (twice.status, twice.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    let json = http_request(
        server.http_addr,
        "POST",
        PATH,
        &[
            ("Authorization", &basic),
            ("Content-Type", "application/json"),
        ],
        "{\"token\":\"x\"}",
    )
    .await;
    assert_eq!(
        (json.status, json.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    let huge = format!("token={}", "a".repeat(20 * 1024));
    let too_big = http_post_form(server.http_addr, PATH, &as_introspector, &huge).await;
    assert_eq!(too_big.status, 413, "{too_big:?}");
}
