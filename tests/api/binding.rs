//! Certificate-bound access tokens (RFC 8705) and bound refresh tokens:
//! what Issue and Refresh bind, what Validate, Envoy's Check, `/authz` and
//! introspection check, the refresh of a bound session over mutual TLS, and
//! the tenant policy.
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse as CheckHttpResponse;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use tempfile::TempDir;
use tonic::{Code, Status};

use crate::certs::*;
use crate::common::*;
use crate::ext_authz::check_request;
use crate::sidecar::TestSidecar;
use token_authority::access::config::{CallerConfig, ExchangeConfig};
use token_authority::access::Permission;
use token_authority::config::tls::ClientAuth;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{self as pb};
use token_authority::verify::binding::thumbprint_of_der;

/// A client certificate naming `spiffe_id`.
fn spiffe_cert(ca: &Ca, spiffe_id: &str) -> Cert {
    client_cert(ca, uri(spiffe_id))
}

fn bound_to(thumbprint: &str) -> pb::TokenBinding {
    pb::TokenBinding {
        certificate_thumbprint: thumbprint.into(),
        ..Default::default()
    }
}

/// Issues a session of `tenant` bound as `binding` and returns its tokens.
async fn issue_bound_with(
    client: &mut Client,
    tenant: &str,
    binding: pb::TokenBinding,
) -> pb::TokenPair {
    client
        .issue(issue_bound(tenant, binding))
        .await
        .expect("issue")
        .into_inner()
        .tokens
        .expect("tokens")
}

fn issue_bound(tenant: &str, binding: pb::TokenBinding) -> pb::IssueRequest {
    pb::IssueRequest {
        binding: Some(binding),
        ..issue_request(tenant, "alice")
    }
}

async fn validate_presented(
    client: &mut Client,
    token: &str,
    presenter: &str,
) -> Result<pb::Claims, Status> {
    client
        .validate(pb::ValidateRequest {
            access_token: token.into(),
            presenter_certificate_thumbprint: presenter.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().claims.expect("claims"))
}

fn cnf_of(token: &str) -> Option<String> {
    access_token_payload(token)
        .get("cnf")
        .map(|cnf| cnf["x5t#S256"].as_str().expect("x5t#S256").to_owned())
}

async fn bound_tokens_validate_only_for_their_certificate(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    let ca = new_ca("binding test CA");
    let (mine, other) = (
        spiffe_cert(&ca, "spiffe://test/api"),
        spiffe_cert(&ca, "spiffe://test/other"),
    );
    let pair = issue_bound_with(&mut client, "acme", bound_to(&mine.thumbprint())).await;
    assert_eq!(cnf_of(&pair.access_token), Some(mine.thumbprint()));

    for presenter in [String::new(), other.thumbprint()] {
        let refused = validate_presented(&mut client, &pair.access_token, &presenter).await;
        assert_error(refused, Code::Unauthenticated, "TOKEN_BINDING_MISMATCH");
    }
    let claims = validate_presented(&mut client, &pair.access_token, &mine.thumbprint())
        .await
        .expect("its own certificate");
    assert_eq!(claims.certificate_thumbprint, mine.thumbprint());
    assert_invalid(
        validate_presented(&mut client, &pair.access_token, "not-a-thumbprint").await,
        "presenter_certificate_thumbprint",
    );

    // Every token refreshed from the session is bound the same way.
    let refreshed = server.refresh(&pair.refresh_token).await.expect("refresh");
    assert_eq!(cnf_of(&refreshed.access_token), Some(mine.thumbprint()));
    assert_error(
        server.validate(&refreshed.access_token).await,
        Code::Unauthenticated,
        "TOKEN_BINDING_MISMATCH",
    );
    let sessions = server.list("acme", "alice").await;
    assert_eq!(sessions[0].certificate_thumbprint, mine.thumbprint());
    assert!(!sessions[0].refresh_token_bound);

    // A refresh may not rebind a bound session, and the refused attempt
    // leaves it as it was.
    let rebind = client
        .refresh(pb::RefreshRequest {
            refresh_token: refreshed.refresh_token.clone(),
            binding: Some(bound_to(&other.thumbprint())),
            ..Default::default()
        })
        .await;
    assert_invalid(rebind, "binding");
    let same = client
        .refresh(pb::RefreshRequest {
            refresh_token: refreshed.refresh_token.clone(),
            binding: Some(bound_to(&mine.thumbprint())),
            ..Default::default()
        })
        .await
        .expect("the same binding, and the token was not rotated by the refusal");
    let same = same.into_inner().tokens.expect("tokens");
    assert_eq!(cnf_of(&same.access_token), Some(mine.thumbprint()));

    // Bearer tokens are untouched, whatever the presenter shows.
    let bearer = server.issue("acme", "bob").await;
    assert_eq!(cnf_of(&bearer.access_token), None);
    validate_presented(&mut client, &bearer.access_token, &other.thumbprint())
        .await
        .expect("bearer token");
    // A refresh of an unbound session may bind its own access token only.
    let once = client
        .refresh(pb::RefreshRequest {
            refresh_token: bearer.refresh_token,
            binding: Some(bound_to(&other.thumbprint())),
            ..Default::default()
        })
        .await
        .expect("refresh with a binding")
        .into_inner()
        .tokens
        .expect("tokens");
    assert_eq!(cnf_of(&once.access_token), Some(other.thumbprint()));
    let next = server.refresh(&once.refresh_token).await.expect("refresh");
    assert_eq!(
        cnf_of(&next.access_token),
        None,
        "the session stays unbound"
    );
}

async fn binding_requests_are_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    let issue = |binding| issue_bound("acme", binding);
    let bad = [
        (bound_to("short"), "binding.certificate_thumbprint"),
        (
            bound_to(&format!("{}=", thumbprint_of_der(b"x"))),
            "binding.certificate_thumbprint",
        ),
        (pb::TokenBinding::default(), "binding"),
        (
            pb::TokenBinding {
                certificate_thumbprint: thumbprint_of_der(b"x"),
                bind_to_caller_certificate: true,
                ..Default::default()
            },
            "binding",
        ),
        // A plain-text connection has no client certificate.
        (
            pb::TokenBinding {
                bind_to_caller_certificate: true,
                ..Default::default()
            },
            "binding.bind_to_caller_certificate",
        ),
    ];
    for (binding, field) in bad {
        assert_invalid(client.issue(issue(binding)).await, field);
    }
    let pair = server.issue("acme", "alice").await;
    let refresh_bound = client
        .refresh(pb::RefreshRequest {
            refresh_token: pair.refresh_token,
            binding: Some(pb::TokenBinding {
                bind_refresh_token: true,
                ..bound_to(&thumbprint_of_der(b"x"))
            }),
            ..Default::default()
        })
        .await;
    assert_invalid(refresh_bound, "binding.bind_refresh_token");
    let mut claiming_cnf = issue_request("acme", "alice");
    claiming_cnf.extra_claims = Some(prost_types::Struct {
        fields: [(
            "cnf".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("forged".into())),
            },
        )]
        .into(),
    });
    assert_invalid(client.issue(claiming_cnf).await, "extra_claims");
    assert_eq!(server.session_rows().await, 1, "nothing issued");
}

async fn envoy_check_compares_the_peer_certificate(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ca = new_ca("binding test CA");
    let (mine, other) = (
        spiffe_cert(&ca, "spiffe://test/web"),
        spiffe_cert(&ca, "spiffe://test/other"),
    );
    let pair = issue_bound_with(&mut server.client(), "acme", bound_to(&mine.thumbprint())).await;
    let authorization = format!("Bearer {}", pair.access_token);
    let check = |certificate: Option<String>| {
        let mut request: CheckRequest =
            check_request(&[("authorization", &authorization)], &[("audience", "api")]);
        if let Some(certificate) = certificate {
            let attributes = request.attributes.as_mut().expect("attributes");
            attributes
                .source
                .get_or_insert_with(Default::default)
                .certificate = certificate;
        }
        let mut client = server.authz_client();
        async move { client.check(request).await.expect("Check").into_inner() }
    };
    let challenge = |response: &envoy_types::pb::envoy::service::auth::v3::CheckResponse| {
        let Some(CheckHttpResponse::DeniedResponse(denied)) = &response.http_response else {
            panic!("not denied: {response:?}")
        };
        assert_eq!(denied.status.as_ref().map(|s| s.code), Some(401));
        denied
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "www-authenticate")
            .map(|h| h.value.clone())
            .expect("challenge")
    };
    for certificate in [None, Some(other.url_encoded_pem())] {
        let response = check(certificate).await;
        assert!(
            challenge(&response).contains("error_description=\"TOKEN_BINDING_MISMATCH\""),
            "{response:?}"
        );
    }
    let response = check(Some("not%20a%20certificate".into())).await;
    assert!(
        challenge(&response).contains("invalid_request"),
        "{response:?}"
    );
    let response = check(Some(mine.url_encoded_pem())).await;
    assert!(
        matches!(
            response.http_response,
            Some(CheckHttpResponse::OkResponse(_))
        ),
        "{response:?}"
    );
}

const LOGIN_ID: &str = "spiffe://test/ns/prod/sa/login";
const THIEF_ID: &str = "spiffe://test/ns/prod/sa/thief";

/// A caller recognised by its client certificate's SAN.
fn login_caller(name: &str, identity: &str) -> CallerConfig {
    let permissions = [
        Permission::Issue,
        Permission::Refresh,
        Permission::ListSessions,
        Permission::Exchange,
    ];
    CallerConfig {
        exchange: Some(ExchangeConfig {
            subject_audiences: vec!["api".into()],
            target_audiences: vec!["billing".into()],
        }),
        ..certificate_caller(name, identity, &permissions)
    }
}

/// A server speaking TLS (gRPC and HTTP) with `ca`'s certificate for
/// 127.0.0.1, taking client certificates of `ca`, with `callers`.
async fn start_tls(backend: Backend, ca: &Ca, callers: Vec<CallerConfig>) -> (TestServer, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = ServerFiles::write(ca, &dir);
    let server = TestServer::start_with(backend, |config| {
        files.configure(config, ClientAuth::Optional);
        config.http.tls = true;
        config.auth.callers = callers;
    })
    .await;
    (server, dir)
}

async fn tls_client(addr: SocketAddr, ca: &Ca, identity: Option<&Cert>) -> Client {
    TokenAuthorityClient::new(connect(addr, ca, identity).await.expect("connects"))
}

async fn refresh_over(
    client: &mut Client,
    key: Option<&str>,
    refresh_token: &str,
) -> Result<pb::TokenPair, Status> {
    let message = pb::RefreshRequest {
        refresh_token: refresh_token.into(),
        ..Default::default()
    };
    let request = match key {
        Some(key) => with_bearer(message, key),
        None => tonic::Request::new(message),
    };
    client
        .refresh(request)
        .await
        .map(|r| r.into_inner().tokens.expect("tokens"))
}

async fn a_bound_refresh_token_rotates_only_for_its_certificate(backend: Backend) {
    let ca = new_ca("binding test CA");
    let keyed = TestCaller::new("keyed", &[Permission::Refresh], &["*"]);
    let callers = vec![
        login_caller("login", LOGIN_ID),
        login_caller("thief", THIEF_ID),
        keyed.config.clone(),
    ];
    let (server, _dir) = start_tls(backend, &ca, callers).await;
    let login_cert = spiffe_cert(&ca, LOGIN_ID);
    let mut login = tls_client(server.addr, &ca, Some(&login_cert)).await;
    let mut thief = tls_client(server.addr, &ca, Some(&spiffe_cert(&ca, THIEF_ID))).await;
    let mut without_certificate = tls_client(server.addr, &ca, None).await;

    let binding = pb::TokenBinding {
        bind_to_caller_certificate: true,
        bind_refresh_token: true,
        ..Default::default()
    };
    let first = issue_bound_with(&mut login, "acme", binding).await;
    assert_eq!(cnf_of(&first.access_token), Some(login_cert.thumbprint()));

    let refused = refresh_over(&mut thief, None, &first.refresh_token).await;
    assert_error(refused, Code::Unauthenticated, "TOKEN_BINDING_MISMATCH");
    let refused = refresh_over(
        &mut without_certificate,
        Some(&keyed.key),
        &first.refresh_token,
    )
    .await;
    assert_error(refused, Code::Unauthenticated, "TOKEN_BINDING_MISMATCH");

    // The refused attempts neither rotated the session nor counted as a
    // replay: the rightful holder refreshes as if nothing happened.
    let second = refresh_over(&mut login, None, &first.refresh_token)
        .await
        .expect("the bound caller refreshes");
    assert_eq!(cnf_of(&second.access_token), Some(login_cert.thumbprint()));
    // The thief replaying the rotated token does not get the session
    // revoked either.
    let replay = refresh_over(&mut thief, None, &first.refresh_token).await;
    assert_error(replay, Code::Unauthenticated, "TOKEN_BINDING_MISMATCH");
    let third = refresh_over(&mut login, None, &second.refresh_token)
        .await
        .expect("still the holder's session");
    assert_eq!(cnf_of(&third.access_token), Some(login_cert.thumbprint()));

    let sessions = login
        .list_sessions(pb::ListSessionsRequest {
            tenant_id: "acme".into(),
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].refresh_count, 2);
    assert!(sessions[0].refresh_token_bound);
    assert_eq!(sessions[0].certificate_thumbprint, login_cert.thumbprint());
}

async fn introspection_shows_cnf_and_authz_needs_the_header(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.http.client_certificate_header = Some("Client-Cert".into());
    })
    .await;
    let ca = new_ca("binding test CA");
    let (mine, other) = (
        spiffe_cert(&ca, "spiffe://test/web"),
        spiffe_cert(&ca, "spiffe://test/other"),
    );
    let pair = issue_bound_with(&mut server.client(), "acme", bound_to(&mine.thumbprint())).await;
    let form = format!("token={}", pair.access_token);
    let introspect = |headers: Vec<(&'static str, String)>| {
        let form = form.clone();
        let http = server.http_addr;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            http_post_form(http, "/oauth2/introspect", &headers, &form)
                .await
                .json()
        }
    };
    let answer = introspect(Vec::new()).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["cnf"]["x5t#S256"], mine.thumbprint(), "{answer}");
    let answer = introspect(vec![("client-cert", mine.rfc9440())]).await;
    assert_eq!(answer["active"], true, "{answer}");
    let answer = introspect(vec![("client-cert", other.rfc9440())]).await;
    assert_eq!(answer, serde_json::json!({"active": false}));

    let bearer = format!("Bearer {}", pair.access_token);
    let authz = |certificate: Option<String>| {
        let bearer = bearer.clone();
        let http = server.http_addr;
        async move {
            let mut headers = vec![("authorization", bearer.as_str())];
            if let Some(c) = &certificate {
                headers.push(("client-cert", c.as_str()));
            }
            http_get(http, "/authz?audience=api", &headers).await
        }
    };
    for certificate in [None, Some(other.rfc9440())] {
        let response = authz(certificate).await;
        assert_eq!(response.status, 401);
        let challenge = response.header("www-authenticate").expect("challenge");
        assert!(
            challenge.contains("error=\"invalid_token\"")
                && challenge.contains("error_description=\"TOKEN_BINDING_MISMATCH\""),
            "{challenge}"
        );
    }
    // RFC 9440, or URL-encoded PEM as NGINX's $ssl_client_escaped_cert.
    for certificate in [mine.rfc9440(), mine.url_encoded_pem()] {
        let response = authz(Some(certificate)).await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("x-auth-subject"), Some("alice"));
    }

    // Without the setting no header is believed: bound tokens are refused.
    let plain = TestServer::start(backend).await;
    let pair = issue_bound_with(&mut plain.client(), "acme", bound_to(&mine.thumbprint())).await;
    let bearer = format!("Bearer {}", pair.access_token);
    let response = http_get(
        plain.http_addr,
        "/authz",
        &[("authorization", &bearer), ("client-cert", &mine.rfc9440())],
    )
    .await;
    assert_eq!(response.status, 401, "{response:?}");
    let unbound = format!("Bearer {}", plain.issue("acme", "bob").await.access_token);
    let response = http_get(plain.http_addr, "/authz", &[("authorization", &unbound)]).await;
    assert_eq!(response.status, 200, "{response:?}");
}

async fn tenants_may_require_bound_tokens(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let before = server.issue("acme", "alice").await;
    server.config.tokens.binding_required_tenants = vec!["acme".into()];
    let server = server.restart().await;
    let mut client = server.client();
    let thumbprint = thumbprint_of_der(b"a certificate");

    assert_error(
        client.issue(issue_request("acme", "alice")).await,
        Code::FailedPrecondition,
        "TOKEN_BINDING_REQUIRED",
    );
    server.issue("globex", "alice").await;
    let bound = issue_bound_with(&mut client, "acme", bound_to(&thumbprint)).await;
    validate_presented(&mut client, &bound.access_token, &thumbprint)
        .await
        .expect("bound token");
    server
        .refresh(&bound.refresh_token)
        .await
        .expect("a bound session refreshes");

    // A bearer token and session from before the policy.
    assert_error(
        validate_presented(&mut client, &before.access_token, &thumbprint).await,
        Code::Unauthenticated,
        "TOKEN_BINDING_REQUIRED",
    );
    assert_error(
        server.refresh(&before.refresh_token).await,
        Code::FailedPrecondition,
        "TOKEN_BINDING_REQUIRED",
    );
    // Refused before the rotation: the same token, with a binding, works.
    let rebound = client
        .refresh(pb::RefreshRequest {
            refresh_token: before.refresh_token,
            binding: Some(bound_to(&thumbprint)),
            ..Default::default()
        })
        .await
        .expect("refresh with a binding")
        .into_inner()
        .tokens
        .expect("tokens");
    validate_presented(&mut client, &rebound.access_token, &thumbprint)
        .await
        .expect("bound now");
}

/// `POST /oauth2/token` over HTTPS with curl, presenting `cert`: status and
/// body.
async fn token_endpoint(
    server: &TestServer,
    dir: &TempDir,
    cert: &Cert,
    form: &str,
) -> (u16, String) {
    let (cert_file, key_file) = (dir.path().join("curl.pem"), dir.path().join("curl.key"));
    std::fs::write(&cert_file, &cert.pem).expect("write");
    std::fs::write(&key_file, &cert.key).expect("write");
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(dir.path().join("client-ca.pem"))
        .arg("--cert")
        .arg(cert_file)
        .arg("--key")
        .arg(key_file)
        .args(["--data", form])
        .arg(format!(
            "https://127.0.0.1:{}/oauth2/token",
            server.http_addr.port()
        ))
        .output()
        .await
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

async fn the_token_endpoint_refreshes_a_bound_session_only_for_its_certificate(backend: Backend) {
    let ca = new_ca("binding test CA");
    let callers = vec![
        login_caller("login", LOGIN_ID),
        login_caller("thief", THIEF_ID),
    ];
    let (server, dir) = start_tls(backend, &ca, callers).await;
    let (login_cert, thief_cert) = (spiffe_cert(&ca, LOGIN_ID), spiffe_cert(&ca, THIEF_ID));
    let mut login = tls_client(server.addr, &ca, Some(&login_cert)).await;
    let binding = pb::TokenBinding {
        bind_to_caller_certificate: true,
        bind_refresh_token: true,
        ..Default::default()
    };
    let pair = issue_bound_with(&mut login, "acme", binding).await;
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        pair.refresh_token
    );

    let (status, body) = token_endpoint(&server, &dir, &thief_cert, &form).await;
    assert_eq!(status, 400, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["error"], "invalid_grant", "{answer}");
    assert!(
        answer["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("TOKEN_BINDING_MISMATCH")),
        "{answer}"
    );
    let (status, body) = token_endpoint(&server, &dir, &login_cert, &form).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    let access_token = answer["access_token"].as_str().expect("access_token");
    assert_eq!(cnf_of(access_token), Some(login_cert.thumbprint()));
}

async fn exchange_needs_the_subject_tokens_certificate(backend: Backend) {
    let ca = new_ca("binding test CA");
    let callers = vec![
        login_caller("login", LOGIN_ID),
        login_caller("thief", THIEF_ID),
    ];
    let (server, _dir) = start_tls(backend, &ca, callers).await;
    let login_cert = spiffe_cert(&ca, LOGIN_ID);
    let mut login = tls_client(server.addr, &ca, Some(&login_cert)).await;
    let mut thief = tls_client(server.addr, &ca, Some(&spiffe_cert(&ca, THIEF_ID))).await;
    let binding = pb::TokenBinding {
        bind_to_caller_certificate: true,
        ..Default::default()
    };
    let pair = issue_bound_with(&mut login, "acme", binding).await;
    let exchange = |client: &mut Client| {
        let request = pb::ExchangeRequest {
            subject_token: pair.access_token.clone(),
            audience: "billing".into(),
            ..Default::default()
        };
        let mut client = client.clone();
        async move { client.exchange(request).await.map(|r| r.into_inner()) }
    };
    // Otherwise a stolen bound token would buy an unbound one.
    assert_error(
        exchange(&mut thief).await,
        Code::Unauthenticated,
        "TOKEN_BINDING_MISMATCH",
    );
    let exchanged = exchange(&mut login).await.expect("the holder exchanges");
    assert_eq!(
        cnf_of(&exchanged.access_token),
        Some(login_cert.thumbprint()),
        "the new token keeps the binding"
    );
}

/// A validation sidecar checks `cnf` from memory, and enforces the tenant
/// policy of its own configuration.
async fn a_sidecar_checks_bindings_and_its_own_policy(backend: Backend) {
    let authority = TestServer::start(backend).await;
    let thumbprint = thumbprint_of_der(b"a certificate");
    let bound = issue_bound_with(&mut authority.client(), "globex", bound_to(&thumbprint)).await;
    let bearer = authority.issue("acme", "alice").await;

    let sidecar = TestSidecar::start_with(&authority, Duration::from_secs(300), |c| {
        c.tokens.binding_required_tenants = vec!["acme".into()];
    })
    .await;
    let mut client = sidecar.client.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let claims = loop {
        match validate_presented(&mut client, &bound.access_token, &thumbprint).await {
            Ok(claims) => break claims,
            Err(e) if e.code() == Code::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the sidecar does not validate: {e:?}"),
        }
    };
    assert_eq!(claims.certificate_thumbprint, thumbprint);
    assert_error(
        validate_presented(&mut client, &bound.access_token, "").await,
        Code::Unauthenticated,
        "TOKEN_BINDING_MISMATCH",
    );
    assert_error(
        validate_presented(&mut client, &bearer.access_token, "").await,
        Code::Unauthenticated,
        "TOKEN_BINDING_REQUIRED",
    );
    // The authority has no such policy: the same token is fine there.
    authority
        .validate(&bearer.access_token)
        .await
        .expect("no policy at the authority");
}

crate::on_both_backends!(
    a_sidecar_checks_bindings_and_its_own_policy,
    exchange_needs_the_subject_tokens_certificate,
    the_token_endpoint_refreshes_a_bound_session_only_for_its_certificate,
    bound_tokens_validate_only_for_their_certificate,
    binding_requests_are_checked,
    envoy_check_compares_the_peer_certificate,
    a_bound_refresh_token_rotates_only_for_its_certificate,
    introspection_shows_cnf_and_authz_needs_the_header,
    tenants_may_require_bound_tokens,
);
