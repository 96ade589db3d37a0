//! Admission of callers: every permissioned RPC refuses missing, unknown and
//! malformed credentials and callers without its permission; refusals are
//! audited; callers act only on their tenants; callers have their own rate;
//! metadata is bounded; health and reflection are open; and `serve` will not
//! expose a server that has no callers.
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest, CheckResponse,
};
use tonic::{Code, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_types::StatusExt;

use crate::common::*;
use token_authority::access::{new_bearer_key, Permission};
use token_authority::domain::audit::AuditKind;
use token_authority::proto::{self as pb, revoke_request::Target};

/// The RPCs behind a permission. Their `Debug` names are their gRPC method names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Issue,
    Refresh,
    Revoke,
    ListSessions,
    Validate,
    Exchange,
    GetJwks,
    WatchRevocations,
    Check,
    RotateSigningKey,
    ListSigningKeys,
    ListAuditEvents,
}

const RPCS: [Rpc; 12] = [
    Rpc::Issue,
    Rpc::Refresh,
    Rpc::Revoke,
    Rpc::ListSessions,
    Rpc::Validate,
    Rpc::Exchange,
    Rpc::GetJwks,
    Rpc::WatchRevocations,
    Rpc::Check,
    Rpc::RotateSigningKey,
    Rpc::ListSigningKeys,
    Rpc::ListAuditEvents,
];

impl Rpc {
    fn permission(self) -> Permission {
        match self {
            Rpc::Issue => Permission::Issue,
            Rpc::Refresh => Permission::Refresh,
            Rpc::Revoke => Permission::Revoke,
            Rpc::ListSessions => Permission::ListSessions,
            Rpc::Validate => Permission::Validate,
            Rpc::Exchange => Permission::Exchange,
            Rpc::GetJwks => Permission::GetJwks,
            Rpc::WatchRevocations => Permission::WatchRevocations,
            Rpc::Check => Permission::Check,
            Rpc::RotateSigningKey => Permission::RotateSigningKey,
            Rpc::ListSigningKeys => Permission::ListSigningKeys,
            Rpc::ListAuditEvents => Permission::ReadAudit,
        }
    }

    /// Every permission but this RPC's (and not `*`).
    fn other_permissions(self) -> Vec<Permission> {
        RPCS.iter()
            .filter(|&&other| other != self)
            .map(|other| other.permission())
            .collect()
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// `message` with `authorization: <value>`, if given.
fn authorized<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("header value"));
    }
    request
}

/// An Envoy Check of an HTTP request carrying `authorization`.
fn check_request(authorization: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: "/orders".into(),
                    headers: [("authorization".to_owned(), authorization.to_owned())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Calls `rpc` with `authorization` and a well-formed request that names
/// nothing stored, so that an admitted call has a known outcome (see
/// `assert_admitted`). A refused WatchRevocations fails the call itself.
async fn call(server: &TestServer, rpc: Rpc, authorization: Option<&str>) -> Result<(), Status> {
    let mut client = server.client();
    let mut admin = server.admin_client();
    let auth = authorization;
    match rpc {
        Rpc::Issue => client
            .issue(authorized(issue_request("acme", "alice"), auth))
            .await
            .map(drop),
        Rpc::Refresh => client
            .refresh(authorized(
                pb::RefreshRequest {
                    refresh_token: "rt1_not-a-refresh-token".into(),
                    device: None,
                    binding: None,
                },
                auth,
            ))
            .await
            .map(drop),
        Rpc::Revoke => client
            .revoke(authorized(
                pb::RevokeRequest {
                    tenant_id: "acme".into(),
                    target: Some(Target::SessionId(uuid::Uuid::nil().to_string())),
                    reason: String::new(),
                },
                auth,
            ))
            .await
            .map(drop),
        Rpc::ListSessions => client
            .list_sessions(authorized(
                pb::ListSessionsRequest {
                    tenant_id: "acme".into(),
                    subject: "alice".into(),
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        Rpc::Validate => client
            .validate(authorized(
                pb::ValidateRequest {
                    access_token: "not-a-jwt".into(),
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        Rpc::Exchange => client
            .exchange(authorized(
                pb::ExchangeRequest {
                    subject_token: "not-a-jwt".into(),
                    audience: "billing".into(),
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        Rpc::GetJwks => client
            .get_jwks(authorized(pb::GetJwksRequest {}, auth))
            .await
            .map(drop),
        Rpc::WatchRevocations => client
            .watch_revocations(authorized(pb::WatchRevocationsRequest::default(), auth))
            .await
            .map(drop),
        Rpc::Check => server
            .authz_client()
            .check(authorized(check_request("Bearer not-a-jwt"), auth))
            .await
            .map(drop),
        Rpc::RotateSigningKey => admin
            .rotate_signing_key(authorized(pb::RotateSigningKeyRequest::default(), auth))
            .await
            .map(drop),
        Rpc::ListSigningKeys => admin
            .list_signing_keys(authorized(pb::ListSigningKeysRequest {}, auth))
            .await
            .map(drop),
        Rpc::ListAuditEvents => admin
            .list_audit_events(authorized(pb::ListAuditEventsRequest::default(), auth))
            .await
            .map(drop),
    }
}

/// Asserts that `call(rpc)` reached the RPC: the answer is the RPC's own.
fn assert_admitted(rpc: Rpc, result: Result<(), Status>) {
    match rpc {
        Rpc::Refresh | Rpc::Validate | Rpc::Exchange => {
            assert_error(result, Code::Unauthenticated, "TOKEN_INVALID");
        }
        Rpc::Revoke => {
            assert_error(result, Code::NotFound, "SESSION_NOT_FOUND");
        }
        _ => result.unwrap_or_else(|status| panic!("{rpc:?} was not admitted: {status:?}")),
    }
}

/// Asserts an access-layer refusal of `rpc`: code, reason, and the method
/// named in the ErrorInfo.
fn assert_refused(rpc: Rpc, result: Result<(), Status>, code: Code, expected: &str) {
    let status = result.expect_err(&format!("{rpc:?} should be refused with {expected}"));
    assert_eq!(status.code(), code, "{rpc:?}: {status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, expected, "{rpc:?}: {status:?}");
    assert_eq!(info.domain, "token-authority");
    assert_eq!(
        info.metadata.get("method").map(String::as_str),
        Some(format!("{rpc:?}").as_str()),
        "{status:?}"
    );
}

/// A caller granted Exchange (or `*`) exchanges only with an exchange
/// table; here one that lets any exchange through to the subject token's
/// validation.
fn may_exchange_anything(caller: TestCaller) -> TestCaller {
    let permissions = &caller.config.permissions;
    if permissions.contains(&Permission::Exchange) || permissions.contains(&Permission::All) {
        caller.with_exchange(&["*"], &["*"])
    } else {
        caller
    }
}

async fn every_permissioned_rpc_needs_credentials_and_its_permission(backend: Backend) {
    let only: Vec<TestCaller> = RPCS
        .iter()
        .map(|rpc| TestCaller::new(&format!("only-{rpc:?}"), &[rpc.permission()], &["*"]))
        .map(may_exchange_anything)
        .collect();
    let all_but: Vec<TestCaller> = RPCS
        .iter()
        .map(|rpc| {
            TestCaller::new(
                &format!("all-but-{rpc:?}"),
                &rpc.other_permissions(),
                &["*"],
            )
        })
        .map(may_exchange_anything)
        .collect();
    let everything =
        may_exchange_anything(TestCaller::new("everything", &[Permission::All], &["*"]));
    let server = TestServer::start_with(backend, |config| {
        let callers = only.iter().chain(&all_but).chain([&everything]);
        config.auth.callers = callers.map(|c| c.config.clone()).collect();
    })
    .await;
    let (unknown_key, _) = new_bearer_key().expect("random key");

    for (rpc, (only, all_but)) in RPCS.into_iter().zip(only.iter().zip(&all_but)) {
        let missing = call(&server, rpc, None).await;
        assert_refused(rpc, missing, Code::Unauthenticated, "CREDENTIALS_MISSING");
        let unknown = call(&server, rpc, Some(&bearer(&unknown_key))).await;
        assert_refused(rpc, unknown, Code::Unauthenticated, "CREDENTIALS_INVALID");
        let good_key_wrong_scheme = format!("Basic {}", only.key);
        for malformed in ["Basic abc", "Bearer", "Bearer ", &good_key_wrong_scheme] {
            let result = call(&server, rpc, Some(malformed)).await;
            assert_refused(rpc, result, Code::Unauthenticated, "CREDENTIALS_INVALID");
        }
        let result = call(&server, rpc, Some(&bearer(&all_but.key))).await;
        assert_refused(
            rpc,
            result,
            Code::PermissionDenied,
            "PERMISSION_NOT_GRANTED",
        );

        assert_admitted(rpc, call(&server, rpc, Some(&bearer(&only.key))).await);
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let lower = format!("bearer {}", only.key);
        assert_admitted(rpc, call(&server, rpc, Some(&lower)).await);
        let all = call(&server, rpc, Some(&bearer(&everything.key))).await;
        assert_admitted(rpc, all);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_open_to_anyone() {
    let caller = TestCaller::new("jwks", &[Permission::GetJwks], &["*"]);
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.auth.callers.push(caller.config.clone());
    })
    .await;
    // The same connection refuses a permissioned RPC without credentials.
    assert_refused(
        Rpc::GetJwks,
        call(&server, Rpc::GetJwks, None).await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    let (unknown_key, _) = new_bearer_key().expect("random key");
    for authorization in [None, Some(bearer(&unknown_key))] {
        let health = HealthClient::new(server.channel.clone())
            .check(authorized(
                HealthCheckRequest::default(),
                authorization.as_deref(),
            ))
            .await
            .expect("health check is open")
            .into_inner();
        assert_eq!(health.status, 1, "SERVING");

        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(server.channel.clone())
            .server_reflection_info(authorized(
                futures::stream::iter([request]),
                authorization.as_deref(),
            ))
            .await
            .expect("reflection is open")
            .into_inner();
        let response = responses.message().await.expect("reflection answers");
        let Some(MessageResponse::ListServicesResponse(list)) =
            response.and_then(|r| r.message_response)
        else {
            panic!("not a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(
            names.contains(&"token_authority.v1.TokenAuthority"),
            "{names:?}"
        );
    }
}

async fn refusals_are_audited(backend: Backend) {
    let reader = TestCaller::new("reader", &[Permission::GetJwks], &["*"]);
    let server = TestServer::start_with(backend, |config| {
        config.auth.callers.push(reader.config.clone());
    })
    .await;
    // Admitted calls are not access-denied events.
    assert_admitted(
        Rpc::GetJwks,
        call(&server, Rpc::GetJwks, Some(&bearer(&reader.key))).await,
    );
    let (unknown_key, _) = new_bearer_key().expect("random key");
    call(&server, Rpc::Issue, None).await.unwrap_err();
    call(&server, Rpc::ListSessions, Some(&bearer(&unknown_key)))
        .await
        .unwrap_err();
    call(&server, Rpc::RotateSigningKey, Some(&bearer(&reader.key)))
        .await
        .unwrap_err();

    let events = server.audit_events(AuditKind::AccessDenied, 3).await;
    let seen: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.subject.as_str(), e.detail.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "unauthenticated",
                Some("Issue: CREDENTIALS_MISSING from 127.0.0.1")
            ),
            (
                "unauthenticated",
                Some("ListSessions: CREDENTIALS_INVALID from 127.0.0.1")
            ),
            (
                "reader",
                Some("RotateSigningKey: PERMISSION_NOT_GRANTED from 127.0.0.1")
            ),
        ]
    );
    for event in &events {
        assert_eq!(event.kind, "access_denied");
        assert_eq!(event.tenant_id, "");
        assert_eq!(event.session_id, None);
        assert!(event.occurred_at > 0);
    }
}

/// Asserts TENANT_NOT_PERMITTED from the domain.
fn assert_tenant_refused<T: std::fmt::Debug>(result: Result<T, Status>) {
    assert_error(result, Code::PermissionDenied, "TENANT_NOT_PERMITTED");
}

/// The gRPC status code and (if denied) HTTP status of a Check verdict.
fn verdict(response: &CheckResponse) -> (i32, Option<i32>) {
    let code = response.status.as_ref().expect("status").code;
    let http = match &response.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => {
            Some(denied.status.as_ref().expect("HTTP status").code)
        }
        Some(HttpResponse::OkResponse(_)) => None,
        other => panic!("unexpected http_response {other:?}"),
    };
    (code, http)
}

fn revoke_request(tenant: &str, target: Target) -> pb::RevokeRequest {
    pb::RevokeRequest {
        tenant_id: tenant.into(),
        target: Some(target),
        reason: String::new(),
    }
}

fn list_request(tenant: &str, subject: &str) -> pb::ListSessionsRequest {
    pb::ListSessionsRequest {
        tenant_id: tenant.into(),
        subject: subject.into(),
        ..Default::default()
    }
}

fn validate_request(access_token: &str) -> pb::ValidateRequest {
    pb::ValidateRequest {
        access_token: access_token.into(),
        ..Default::default()
    }
}

fn refresh_request(refresh_token: &str) -> pb::RefreshRequest {
    pb::RefreshRequest {
        refresh_token: refresh_token.into(),
        device: None,
        binding: None,
    }
}

async fn callers_act_only_on_their_tenants(backend: Backend) {
    let issuer = TestCaller::new("acme-issuer", &[Permission::Issue], &["acme"]);
    let gateway = TestCaller::new(
        "acme-gateway",
        &[
            Permission::Refresh,
            Permission::Revoke,
            Permission::ListSessions,
        ],
        &["acme"],
    );
    let validator = TestCaller::new(
        "acme-validator",
        &[Permission::Validate, Permission::Check],
        &["acme"],
    );
    let admin = TestCaller::new("admin", &[Permission::All], &["*"]);
    let server = TestServer::start_with(backend, |config| {
        config.auth.callers = [&issuer, &gateway, &validator, &admin]
            .iter()
            .map(|c| c.config.clone())
            .collect();
    })
    .await;
    let mut client = server.client();
    let mut authz = server.authz_client();
    let issue_as_admin = |tenant: &'static str, subject: &'static str| {
        let mut client = server.client();
        let request = admin.request(issue_request(tenant, subject));
        async move {
            client
                .issue(request)
                .await
                .unwrap()
                .into_inner()
                .tokens
                .unwrap()
        }
    };
    let acme = issue_as_admin("acme", "alice").await;
    let globex = issue_as_admin("globex", "bob").await;

    // Issue.
    assert_tenant_refused(
        client
            .issue(issuer.request(issue_request("globex", "bob")))
            .await,
    );
    client
        .issue(issuer.request(issue_request("acme", "carol")))
        .await
        .expect("issue for acme");

    // Validate.
    assert_tenant_refused(
        client
            .validate(validator.request(validate_request(&globex.access_token)))
            .await,
    );
    let claims = client
        .validate(validator.request(validate_request(&acme.access_token)))
        .await
        .expect("validate acme")
        .into_inner();
    assert_eq!(claims.claims.expect("claims").tenant_id, "acme");

    // Envoy Check: a verdict, not a gRPC error.
    let globex_check = authz
        .check(validator.request(check_request(&bearer(&globex.access_token))))
        .await
        .expect("a verdict")
        .into_inner();
    assert_eq!(
        verdict(&globex_check),
        (Code::PermissionDenied as i32, Some(403))
    );
    let acme_check = authz
        .check(validator.request(check_request(&bearer(&acme.access_token))))
        .await
        .expect("a verdict")
        .into_inner();
    assert_eq!(verdict(&acme_check), (Code::Ok as i32, None));

    // ListSessions.
    assert_tenant_refused(
        client
            .list_sessions(gateway.request(list_request("globex", "bob")))
            .await,
    );
    let listed = client
        .list_sessions(gateway.request(list_request("acme", "alice")))
        .await
        .expect("list acme")
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session_id, acme.session_id);

    // Refresh: refused without rotating anything; the owner's refresh works.
    assert_tenant_refused(
        client
            .refresh(gateway.request(refresh_request(&globex.refresh_token)))
            .await,
    );
    // The refused refresh rotated nothing.
    let untouched = client
        .list_sessions(admin.request(list_request("globex", "bob")))
        .await
        .expect("list globex")
        .into_inner()
        .sessions;
    assert_eq!(untouched[0].refresh_count, 0);
    let globex = client
        .refresh(admin.request(refresh_request(&globex.refresh_token)))
        .await
        .expect("the refused refresh left the token current")
        .into_inner()
        .tokens
        .expect("tokens");
    let globex_sessions = client
        .list_sessions(admin.request(list_request("globex", "bob")))
        .await
        .expect("list globex")
        .into_inner()
        .sessions;
    assert_eq!(globex_sessions.len(), 1);
    assert_eq!(globex_sessions[0].refresh_count, 1);
    client
        .refresh(gateway.request(refresh_request(&acme.refresh_token)))
        .await
        .expect("refresh acme");

    // Revoke: by session id, by refresh token (tenant from the session), all of a subject.
    assert_tenant_refused(
        client
            .revoke(gateway.request(revoke_request(
                "globex",
                Target::SessionId(globex.session_id.clone()),
            )))
            .await,
    );
    assert_tenant_refused(
        client
            .revoke(gateway.request(revoke_request(
                "",
                Target::RefreshToken(globex.refresh_token.clone()),
            )))
            .await,
    );
    assert_tenant_refused(
        client
            .revoke(gateway.request(revoke_request(
                "globex",
                Target::AllSessions(pb::SubjectSessions {
                    subject: "bob".into(),
                }),
            )))
            .await,
    );
    client
        .validate(admin.request(validate_request(&globex.access_token)))
        .await
        .expect("globex session still live");
    let acme_by_token = issue_as_admin("acme", "dave").await;
    let acme_for_all = issue_as_admin("acme", "erin").await;
    let revoked = [
        revoke_request("acme", Target::SessionId(acme.session_id.clone())),
        revoke_request("", Target::RefreshToken(acme_by_token.refresh_token)),
        revoke_request(
            "acme",
            Target::AllSessions(pb::SubjectSessions {
                subject: "erin".into(),
            }),
        ),
    ];
    for request in revoked {
        let response = client
            .revoke(gateway.request(request))
            .await
            .expect("revoke acme")
            .into_inner();
        assert_eq!(response.revoked_sessions, 1);
    }
    assert_error(
        client
            .validate(admin.request(validate_request(&acme_for_all.access_token)))
            .await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

/// A refresh refused for its tenant must not count against the session's
/// refresh allowance: else a caller of one tenant can stop another tenant's
/// user from refreshing. FAILS today: `Authority::refresh` consults the
/// per-session limiter before it learns the session's tenant.
async fn refused_refreshes_do_not_spend_the_sessions_allowance(backend: Backend) {
    let gateway = TestCaller::new("acme-gateway", &[Permission::Refresh], &["acme"]);
    let admin = TestCaller::new("admin", &[Permission::All], &["*"]);
    let server = TestServer::start_with(backend, |config| {
        config.limits.refresh_per_session = Some("3/min".parse().expect("rate"));
        config.auth.callers = vec![gateway.config.clone(), admin.config.clone()];
    })
    .await;
    let mut client = server.client();
    let globex = client
        .issue(admin.request(issue_request("globex", "bob")))
        .await
        .expect("issue")
        .into_inner()
        .tokens
        .expect("tokens");
    for _ in 0..3 {
        assert_tenant_refused(
            client
                .refresh(gateway.request(refresh_request(&globex.refresh_token)))
                .await,
        );
    }
    // The owner still has its 3 refreshes a minute, and no more.
    let mut current = globex;
    for _ in 0..3 {
        current = client
            .refresh(admin.request(refresh_request(&current.refresh_token)))
            .await
            .expect("the owner's refresh")
            .into_inner()
            .tokens
            .expect("tokens");
    }
    assert_error(
        client
            .refresh(admin.request(refresh_request(&current.refresh_token)))
            .await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_with_their_own_rate_are_limited_on_the_service_clock() {
    let mut limited = TestCaller::new("limited", &[Permission::GetJwks], &["*"]);
    limited.config.rate = Some("3/min".parse().expect("rate"));
    let other = TestCaller::new("other", &[Permission::GetJwks], &["*"]);
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.auth.callers = vec![limited.config.clone(), other.config.clone()];
    })
    .await;
    let server = &server;
    let jwks = |caller: &TestCaller| {
        let authorization = bearer(&caller.key);
        async move { call(server, Rpc::GetJwks, Some(&authorization)).await }
    };

    for _ in 0..3 {
        jwks(&limited).await.expect("within the rate");
    }
    let status = assert_error(
        jwks(&limited).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    let delay = status
        .get_details_retry_info()
        .expect("RetryInfo")
        .retry_delay
        .expect("retry delay");
    assert!(
        delay > Duration::from_secs(15) && delay <= Duration::from_secs(20),
        "3/min frees one call every 20 s: {delay:?}"
    );
    for _ in 0..5 {
        jwks(&other).await.expect("another caller is unaffected");
    }

    server.clock.advance(Duration::from_secs(60));
    for _ in 0..3 {
        jwks(&limited).await.expect("a full allowance again");
    }
    assert_error(
        jwks(&limited).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_metadata_is_refused() {
    let caller = TestCaller::new("jwks", &[Permission::GetJwks], &["*"]);
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.auth.callers.push(caller.config.clone());
    })
    .await;
    let jwks = |padding: usize, authorized: bool| {
        let mut client = server.client();
        let mut request = if authorized {
            caller.request(pb::GetJwksRequest {})
        } else {
            tonic::Request::new(pb::GetJwksRequest {})
        };
        let value = "a".repeat(padding).parse().expect("header value");
        request.metadata_mut().insert("x-padding", value);
        async move { client.get_jwks(request).await }
    };
    jwks(1024, true).await.expect("1 KiB of metadata is fine");
    assert_invalid(jwks(10 * 1024, true).await, "metadata");
    // Checked before credentials: no caller is looked up for it.
    assert_invalid(jwks(10 * 1024, false).await, "metadata");
}

/// `token-authority serve` on a TEST-NET address (never bound: the
/// exposure check comes first), in `dir`, with an optional config file.
fn serve_on_test_net(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
    extra: &[&str],
) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_token-authority"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let output = command
        .args(["serve", "--listen", "192.0.2.1:50051"])
        .args(extra)
        .arg("--database-url")
        .arg(format!("sqlite://{}/x.db", dir.display()))
        .current_dir(dir)
        .env_remove("TOKEN_AUTHORITY_CONFIG")
        .env("TOKEN_AUTHORITY_KEK", crate::processes::TEST_KEK)
        .output()
        .expect("token-authority runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

#[test]
fn serve_refuses_a_non_loopback_address_without_callers_or_with_clear_text_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (succeeded, stderr) = serve_on_test_net(dir.path(), None, &[]);
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 192.0.2.1:50051"),
        "{stderr}"
    );

    let (_, digest) = new_bearer_key().expect("random key");
    let config = dir.path().join("token-authority.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.callers]]\nname = \"ops\"\nkey_sha256 = [\"{}\"]\npermissions = [\"*\"]\ntenants = [\"*\"]\n",
            digest.to_hex()
        ),
    )
    .expect("write config");
    // Bearer keys without TLS would cross the network in clear text.
    let (succeeded, stderr) = serve_on_test_net(dir.path(), Some(&config), &[]);
    assert!(!succeeded, "{stderr}");
    assert!(
        stderr.contains("refusing to accept bearer keys in clear text on 192.0.2.1:50051"),
        "{stderr}"
    );
    let (succeeded, stderr) = serve_on_test_net(dir.path(), Some(&config), &["--insecure"]);
    assert!(
        !succeeded,
        "192.0.2.1 is not an address of this host: {stderr}"
    );
    assert!(!stderr.contains("refusing to"), "{stderr}");
    // It got as far as binding, which fails on a TEST-NET address.
    assert!(stderr.contains("binding 192.0.2.1:50051"), "{stderr}");
}

crate::on_both_backends!(
    every_permissioned_rpc_needs_credentials_and_its_permission,
    refusals_are_audited,
    callers_act_only_on_their_tenants,
    refused_refreshes_do_not_spend_the_sessions_allowance,
);
