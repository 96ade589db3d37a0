//! The OAuth 2.0 endpoints for HTTP clients: RFC 8414 metadata, the token
//! endpoint's refresh_token grant (RFC 6749 §6) and revocation (RFC 7009),
//! first through Authlib (a client library nobody here wrote), then the
//! error contract request by request.
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::common::*;
use crate::processes::free_port;
use token_authority::access::Permission;
use token_authority::domain::audit::AuditKind;
use token_authority::proto as pb;

const TOKEN: &str = "/oauth2/token";
const REVOKE: &str = "/oauth2/revoke";

struct Callers {
    login: TestCaller,
    bff: TestCaller,
}

fn callers() -> Callers {
    Callers {
        login: TestCaller::new(
            "login",
            &[
                Permission::Issue,
                Permission::Validate,
                Permission::ListSessions,
            ],
            &["*"],
        ),
        bff: TestCaller::new("bff", &[Permission::Refresh, Permission::Revoke], &["acme"]),
    }
}

async fn start(backend: Backend, callers: &Callers) -> TestServer {
    let configs = vec![callers.login.config.clone(), callers.bff.config.clone()];
    TestServer::start_with(backend, |c| c.auth.callers = configs).await
}

async fn issue(server: &TestServer, login: &TestCaller, tenant: &str) -> pb::TokenPair {
    server
        .client()
        .issue(login.request(issue_request(tenant, "alice")))
        .await
        .expect("issue")
        .into_inner()
        .tokens
        .expect("tokens")
}

async fn validate(server: &TestServer, login: &TestCaller, token: &str) -> Result<(), String> {
    validate_for(server, login, token, "").await
}

async fn validate_for(
    server: &TestServer,
    login: &TestCaller,
    token: &str,
    audience: &str,
) -> Result<(), String> {
    server
        .client()
        .validate(login.request(pb::ValidateRequest {
            access_token: token.to_owned(),
            expected_audience: audience.to_owned(),
            ..Default::default()
        }))
        .await
        .map(|_| ())
        .map_err(|status| reason(&status))
}

async fn live_sessions(server: &TestServer, login: &TestCaller, tenant: &str) -> usize {
    server
        .client()
        .list_sessions(login.request(pb::ListSessionsRequest {
            tenant_id: tenant.into(),
            subject: "alice".into(),
            ..Default::default()
        }))
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
        .len()
}

/// RFC 7662 introspection of `token` by `caller`: the JSON answer.
async fn introspect(http: SocketAddr, caller: &TestCaller, token: &str) -> serde_json::Value {
    let auth = basic(caller);
    let form = format!("token={token}");
    http_post_form(
        http,
        "/oauth2/introspect",
        &[("Authorization", &auth)],
        &form,
    )
    .await
    .json()
}

fn basic(caller: &TestCaller) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", caller.config.name, caller.key))
    )
}

/// Runs tests/interop/oauth_client.py: one JSON line per step, by step.
async fn run_authlib(args: &[&str]) -> std::collections::HashMap<String, serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/oauth_client.py");
    let output = tokio::process::Command::new(venv_tool("TA_TEST_PYTHON", "python"))
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "oauth_client.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("Authlib transcript:\n{stdout}");
    stdout
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            (value["step"].as_str().expect("step").to_owned(), value)
        })
        .collect()
}

async fn authlib_refreshes_and_revokes(backend: Backend) {
    let callers = callers();
    let server = start(backend, &callers).await;
    let (a, b, c) = (
        issue(&server, &callers.login, "acme").await,
        issue(&server, &callers.login, "acme").await,
        issue(&server, &callers.login, "acme").await,
    );
    let base = format!("http://{}", server.http_addr);
    let steps = run_authlib(&[
        &base,
        "bff",
        &callers.bff.key,
        &a.refresh_token,
        &b.refresh_token,
        &c.access_token,
    ])
    .await;

    let metadata = &steps["metadata"];
    assert_eq!(metadata["token_endpoint"], format!("{base}{TOKEN}"));
    assert_eq!(metadata["revocation_endpoint"], format!("{base}{REVOKE}"));
    assert_eq!(metadata["issuer"], server.config.tokens.issuer);

    let first = &steps["refresh_basic"];
    assert_eq!(first["rotated"], true);
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["scope"], "read write");
    let expires_in = first["expires_in"].as_i64().expect("expires_in");
    let ttl = server.config.tokens.access_ttl.as_secs() as i64;
    assert!((ttl - 1..=ttl).contains(&expires_in), "{expires_in}");
    let refreshed_access = first["access_token"].as_str().expect("access token");
    assert_eq!(steps["refresh_post"]["rotated"], true);

    assert_eq!(steps["wrong_secret"]["error"], "invalid_client");
    let replay = &steps["replay"];
    assert_eq!(replay["error"], "invalid_grant");
    assert!(
        replay["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("TOKEN_REUSED")),
        "{replay}"
    );
    // The replay revoked the session: its newest token is dead too.
    assert_eq!(steps["after_replay"]["error"], "invalid_grant");
    assert_eq!(
        validate(&server, &callers.login, refreshed_access).await,
        Err("SESSION_REVOKED".into())
    );
    assert!(!server
        .audit_events(AuditKind::ReuseDetected, 1)
        .await
        .is_empty());

    assert_eq!(steps["revoke_refresh"]["status"], 200);
    assert_eq!(steps["revoke_refresh"]["cache_control"], "no-store");
    let after = &steps["after_revoke"];
    assert_eq!(after["error"], "invalid_grant");
    assert!(
        after["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("SESSION_REVOKED")),
        "{after}"
    );
    // Revoking an access token revoked its session (and refresh token).
    assert_eq!(steps["revoke_access"]["status"], 200);
    assert_eq!(
        validate(&server, &callers.login, &c.access_token).await,
        Err("SESSION_REVOKED".into())
    );
    let refreshed = server
        .client()
        .refresh(callers.login.request(pb::RefreshRequest {
            refresh_token: c.refresh_token.clone(),
            device: None,
            binding: None,
        }))
        .await;
    assert!(refreshed.is_err());
    assert_eq!(steps["revoke_garbage"]["status"], 200);
    assert_eq!(live_sessions(&server, &callers.login, "acme").await, 0);
}

/// Every failure of the token endpoint is an RFC 6749 §5.2 error with our
/// reason first in its description; none is a 500.
async fn token_endpoint_errors_follow_rfc_6749(backend: Backend) {
    let callers = callers();
    let server = start(backend, &callers).await;
    let http = server.http_addr;
    let pair = issue(&server, &callers.login, "acme").await;
    let other_tenant = issue(&server, &callers.login, "globex").await;
    let bff = basic(&callers.bff);
    let post = |headers: Vec<(&'static str, String)>, form: String| async move {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        http_post_form(http, TOKEN, &headers, &form).await
    };
    let refresh_form = |token: &str| format!("grant_type=refresh_token&refresh_token={token}");
    let expect = |r: &HttpResponse, status: u16, error: &str, reason: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        let body = r.json();
        assert_eq!(body["error"], error, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with(reason)),
            "{body}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
    };

    let r = post(vec![], refresh_form(&pair.refresh_token)).await;
    expect(&r, 401, "invalid_client", "CREDENTIALS_MISSING");
    assert!(r
        .header("www-authenticate")
        .is_some_and(|c| c.starts_with("Basic")));
    let wrong = format!("Basic {}", STANDARD.encode("bff:tak_wrong"));
    let r = post(
        vec![("Authorization", wrong)],
        refresh_form(&pair.refresh_token),
    )
    .await;
    expect(&r, 401, "invalid_client", "CREDENTIALS_INVALID");
    // The bff's key with another client's name.
    let misnamed = format!(
        "Basic {}",
        STANDARD.encode(format!("login:{}", callers.bff.key))
    );
    let r = post(
        vec![("Authorization", misnamed)],
        refresh_form(&pair.refresh_token),
    )
    .await;
    expect(&r, 401, "invalid_client", "CREDENTIALS_INVALID");
    let r = post(
        vec![("Authorization", basic(&callers.login))],
        refresh_form(&pair.refresh_token),
    )
    .await;
    expect(&r, 403, "unauthorized_client", "PERMISSION_NOT_GRANTED");

    let auth = || vec![("Authorization", bff.clone())];
    let r = post(auth(), "grant_type=password&username=a&password=b".into()).await;
    expect(&r, 400, "unsupported_grant_type", "grant_type password");
    let r = post(auth(), "grant_type=refresh_token".into()).await;
    expect(&r, 400, "invalid_request", "parameter refresh_token");
    let r = post(
        auth(),
        format!("{}&grant_type=refresh_token", refresh_form("x")),
    )
    .await;
    expect(&r, 400, "invalid_request", "parameter grant_type");
    let r = post(auth(), refresh_form("garbage")).await;
    expect(&r, 400, "invalid_grant", "TOKEN_INVALID");
    let r = post(auth(), refresh_form(&other_tenant.refresh_token)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    let headers = [
        ("Authorization", bff.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = http_request(http, "POST", TOKEN, &headers, "{}").await;
    expect(&r, 400, "invalid_request", "the body must be");

    // A client retrying after a lost response is answered the same new
    // token, not logged out.
    let first = post(auth(), refresh_form(&pair.refresh_token)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let retry = post(auth(), refresh_form(&pair.refresh_token)).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.json()["refresh_token"], first.json()["refresh_token"]);
    let next = first.json()["refresh_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = post(auth(), refresh_form(&next)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(live_sessions(&server, &callers.login, "acme").await, 1);

    // Revocation: the same client authentication, and 200 for any token.
    let r = http_post_form(http, REVOKE, &[], "token=x").await;
    expect(&r, 401, "invalid_client", "CREDENTIALS_MISSING");
    let r = http_post_form(http, REVOKE, &[("Authorization", &bff)], "").await;
    expect(&r, 400, "invalid_request", "parameter token");
    let form = format!("token={}", other_tenant.refresh_token);
    let r = http_post_form(http, REVOKE, &[("Authorization", &bff)], &form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // ...but another tenant's session is untouched.
    assert_eq!(live_sessions(&server, &callers.login, "globex").await, 1);

    // Refreshes over HTTP count like gRPC's; every request is timed by route.
    let metrics = http_get(http, "/metrics", &[]).await.body;
    for series in [
        r#"token_authority_refresh_outcomes_total{reason="TOKEN_INVALID"} 1"#,
        r#"token_authority_refresh_outcomes_total{reason="OK"} 3"#,
        r#"http_route="/oauth2/token""#,
        r#"http_response_status_code="401""#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
}

/// Off loopback, over plain HTTP, the endpoints that carry tokens and keys
/// are not served unless the operator says the network is protected.
async fn credential_endpoints_stay_off_a_plain_public_listener(backend: Backend) {
    let callers = callers();
    for plaintext_credentials in [false, true] {
        let at = SocketAddr::from(([0, 0, 0, 0], free_port()));
        let configs = vec![callers.login.config.clone(), callers.bff.config.clone()];
        let _server = TestServer::start_with_http_at(backend, at, |c| {
            c.auth.callers = configs;
            c.http.plaintext_credentials = plaintext_credentials;
        })
        .await;
        let local = SocketAddr::from(([127, 0, 0, 1], at.port()));
        let bff = basic(&callers.bff);
        let token = http_post_form(
            local,
            TOKEN,
            &[("Authorization", &bff)],
            "grant_type=refresh_token&refresh_token=x",
        )
        .await;
        let metadata = http_get(local, "/.well-known/oauth-authorization-server", &[]).await;
        let jwks = http_get(local, "/.well-known/jwks.json", &[]).await;
        assert_eq!(jwks.status, 200);
        if plaintext_credentials {
            assert_eq!(token.status, 400, "{}", token.body);
            assert_eq!(metadata.status, 200);
        } else {
            assert_eq!(token.status, 404, "{}", token.body);
            assert_eq!(metadata.status, 404);
        }
    }
}

crate::on_both_backends!(
    authlib_refreshes_and_revokes,
    token_endpoint_errors_follow_rfc_6749,
    credential_endpoints_stay_off_a_plain_public_listener,
    token_exchange_over_http,
);

/// RFC 8693 over the token endpoint: the exchanged token is the subject's,
/// for the target audience, acted on by the caller, bound to the session.
async fn token_exchange_over_http(backend: Backend) {
    let login = TestCaller::new(
        "login",
        &[
            Permission::Issue,
            Permission::Validate,
            Permission::Revoke,
            Permission::Introspect,
        ],
        &["*"],
    );
    let orders = TestCaller::new("orders", &[Permission::Exchange], &["acme"])
        .with_exchange(&["api"], &["billing"]);
    let bff = TestCaller::new("bff", &[Permission::Refresh], &["acme"]);
    let configs = vec![
        login.config.clone(),
        orders.config.clone(),
        bff.config.clone(),
    ];
    let server = TestServer::start_with(backend, |c| c.auth.callers = configs).await;
    let http = server.http_addr;
    let alice = issue(&server, &login, "acme").await;
    let exchange = |caller: &TestCaller, extra: &str| {
        let auth = basic(caller);
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token{extra}",
            alice.access_token
        );
        async move { http_post_form(http, TOKEN, &[("Authorization", &auth)], &form).await }
    };

    let r = exchange(&orders, "&audience=billing&scope=read").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read");
    let exchanged = body["access_token"].as_str().expect("token").to_owned();
    let claims = access_token_payload(&exchanged);
    let subject = access_token_payload(&alice.access_token);
    eprintln!(
        "exchanged token claims: {}",
        serde_json::Value::Object(claims.clone())
    );
    assert_eq!(claims["act"], serde_json::json!({ "sub": "orders" }));
    assert_eq!(claims["aud"], "billing");
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["client_id"], "login");
    for same in ["sub", "sid", "tenant", "iss"] {
        assert_eq!(claims[same], subject[same], "{same}");
    }
    assert_ne!(claims["jti"], subject["jti"]);
    assert!(claims["exp"].as_i64() <= subject["exp"].as_i64());

    let introspected = introspect(http, &login, &exchanged).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["act"]["sub"], "orders");

    // Refusals, as RFC 8693 §2.2.2 errors with our reasons.
    let expect = |r: HttpResponse, status: u16, error: &str, reason: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        let body = r.json();
        assert_eq!(body["error"], error, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with(reason)),
            "{body}"
        );
    };
    expect(
        exchange(&orders, "&audience=ledger").await,
        400,
        "invalid_target",
        "EXCHANGE_NOT_PERMITTED",
    );
    expect(
        exchange(&orders, "&audience=billing&scope=admin").await,
        400,
        "invalid_scope",
        "SCOPE_NOT_HELD",
    );
    expect(
        exchange(&orders, "").await,
        400,
        "invalid_request",
        "parameter audience",
    );
    expect(
        exchange(&bff, "&audience=billing").await,
        403,
        "unauthorized_client",
        "PERMISSION_NOT_GRANTED",
    );
    let auth = basic(&orders);
    let form = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=garbage&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&audience=billing";
    expect(
        http_post_form(http, TOKEN, &[("Authorization", &auth)], form).await,
        400,
        "invalid_request",
        "TOKEN_INVALID",
    );
    let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&audience=billing", alice.access_token);
    expect(
        http_post_form(http, TOKEN, &[("Authorization", &auth)], &form).await,
        400,
        "invalid_request",
        "subject_token_type",
    );

    // Revoking the session kills the exchanged token with it.
    server
        .client()
        .revoke(login.request(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(pb::revoke_request::Target::SessionId(
                alice.session_id.clone(),
            )),
            reason: "test".into(),
        }))
        .await
        .expect("revoke");
    assert_eq!(
        validate_for(&server, &login, &exchanged, "billing").await,
        Err("SESSION_REVOKED".into())
    );
    let introspected = introspect(http, &login, &exchanged).await;
    assert_eq!(introspected, serde_json::json!({ "active": false }));
    expect(
        exchange(&orders, "&audience=billing").await,
        400,
        "invalid_request",
        "SESSION_REVOKED",
    );
}
