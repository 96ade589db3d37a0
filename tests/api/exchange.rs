//! Token exchange: a service trades a subject's token for one addressed to
//! another audience, bound to the same session, naming itself as actor.
use std::time::Duration;

use serde_json::{json, Value};
use tonic::{Code, Status};

use crate::common::*;
use token_authority::access::Permission;
use token_authority::domain::audit::AuditKind;
use token_authority::proto::{self as pb, revoke_request::Target};

/// A server with a login service (everything, no exchange), `orders`
/// (receives tokens for "api", may exchange them for "billing") and
/// `billing` (may pass "billing" tokens on to "ledger").
struct Setup {
    server: TestServer,
    login: TestCaller,
    orders: TestCaller,
    billing: TestCaller,
    reader: TestCaller,
}

impl Setup {
    async fn start(backend: Backend) -> Self {
        let login = TestCaller::new("login", &[Permission::All], &["*"]);
        let orders = TestCaller::new(
            "orders",
            &[Permission::Exchange, Permission::Validate],
            &["acme"],
        )
        .with_exchange(&["api"], &["billing"]);
        let billing = TestCaller::new("billing", &[Permission::Exchange], &["acme"])
            .with_exchange(&["billing"], &["ledger"]);
        let reader = TestCaller::new("reader", &[Permission::Validate], &["*"]);
        let server = TestServer::start_with(backend, |config| {
            config.auth.callers = [&login, &orders, &billing, &reader]
                .iter()
                .map(|c| c.config.clone())
                .collect();
        })
        .await;
        Self {
            server,
            login,
            orders,
            billing,
            reader,
        }
    }

    async fn issue(&self, tenant: &str, subject: &str) -> pb::TokenPair {
        self.server
            .client()
            .issue(self.login.request(issue_request(tenant, subject)))
            .await
            .expect("issue")
            .into_inner()
            .tokens
            .expect("tokens")
    }

    async fn exchange(
        &self,
        caller: &TestCaller,
        subject_token: &str,
        audience: &str,
        scopes: &[&str],
    ) -> Result<pb::ExchangeResponse, Status> {
        self.exchange_request(
            caller,
            pb::ExchangeRequest {
                subject_token: subject_token.into(),
                audience: audience.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                requested_lifetime: None,
            },
        )
        .await
    }

    async fn exchange_request(
        &self,
        caller: &TestCaller,
        request: pb::ExchangeRequest,
    ) -> Result<pb::ExchangeResponse, Status> {
        self.server
            .client()
            .exchange(caller.request(request))
            .await
            .map(|r| r.into_inner())
    }

    async fn validate(&self, token: &str, audience: &str) -> Result<pb::Claims, Status> {
        self.server
            .client()
            .validate(self.reader.request(pb::ValidateRequest {
                access_token: token.into(),
                expected_audience: audience.into(),
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner().claims.expect("claims"))
    }

    async fn revoke(&self, tenant: &str, target: Target) {
        self.server
            .client()
            .revoke(self.login.request(pb::RevokeRequest {
                tenant_id: tenant.into(),
                target: Some(target),
                reason: "test".into(),
            }))
            .await
            .expect("revoke");
    }
}

/// The JWT's claims, decoded without checking anything.
fn payload(jwt: &str) -> Value {
    Value::Object(access_token_payload(jwt))
}

async fn the_exchanged_token_is_the_subjects_for_the_target_audience(backend: Backend) {
    let s = Setup::start(backend).await;
    let pair = s.issue("acme", "alice").await;
    let exchanged = s
        .exchange(&s.orders, &pair.access_token, "billing", &["read"])
        .await
        .unwrap();
    assert_eq!(
        exchanged.issued_token_type,
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(exchanged.token_type, "Bearer");
    assert_eq!(exchanged.audience, "billing");
    assert_eq!(exchanged.scopes, ["read"]);
    assert_eq!(exchanged.session_id, pair.session_id);
    assert_eq!(exchanged.actors, ["orders"]);

    let subject = payload(&pair.access_token);
    let claims = payload(&exchanged.access_token);
    assert_eq!(claims["act"], json!({"sub": "orders"}));
    assert_eq!(claims["aud"], "billing");
    assert_eq!(claims["scope"], "read");
    for same in ["sub", "tenant", "sid", "iss"] {
        assert_eq!(claims[same], subject[same], "{same}");
    }
    assert_ne!(claims["jti"], subject["jti"]);
    assert_eq!(claims["jti"], exchanged.token_id.as_str());
    assert!(claims["exp"].as_i64().unwrap() <= subject["exp"].as_i64().unwrap());
    assert_eq!(
        exchanged.expires_at.as_ref().unwrap().seconds,
        claims["exp"].as_i64().unwrap()
    );
    assert_eq!(subject.get("act"), None);

    // For the target audience it validates, and says who acts; for the
    // subject token's audience it does not.
    let validated = s
        .validate(&exchanged.access_token, "billing")
        .await
        .unwrap();
    assert_eq!(validated.subject, "alice");
    assert_eq!(validated.session_id, pair.session_id);
    assert_eq!(validated.scopes, ["read"]);
    let actor = validated.actor.expect("actor");
    assert_eq!((actor.subject.as_str(), actor.actor), ("orders", None));
    assert_error(
        s.validate(&exchanged.access_token, "api").await,
        Code::PermissionDenied,
        "AUDIENCE_MISMATCH",
    );
    assert_eq!(
        s.validate(&pair.access_token, "api").await.unwrap().actor,
        None
    );

    // No scopes asked for: all of the subject token's.
    let all = s
        .exchange(&s.orders, &pair.access_token, "billing", &[])
        .await
        .unwrap();
    assert_eq!(all.scopes, ["read", "write"]);
    assert_eq!(payload(&all.access_token)["scope"], "read write");

    // Both exchanges are in the audit trail.
    let events = s.server.audit_events(AuditKind::TokenExchanged, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let first = &events[0];
    assert_eq!(first.tenant_id, "acme");
    assert_eq!(first.subject, "alice");
    assert_eq!(first.session_id.as_deref(), Some(pair.session_id.as_str()));
    let detail = first.detail.as_deref().unwrap();
    assert!(
        detail.starts_with("api -> billing, scope \"read\"") && detail.ends_with(", by orders"),
        "{detail}"
    );
    assert!(detail.contains(&exchanged.token_id), "{detail}");
    assert!(!detail.contains(&exchanged.access_token));
}

async fn the_exchanged_token_never_outlives_the_subject_token(backend: Backend) {
    let s = Setup::start(backend).await;
    let pair = s.issue("acme", "alice").await;
    let subject_exp = payload(&pair.access_token)["exp"].as_i64().unwrap();
    let ttl = s.server.config.tokens.access_ttl;

    // Half the subject token's life later: the new token ends with it.
    s.server.clock.advance(ttl / 2);
    let late = s
        .exchange(&s.orders, &pair.access_token, "billing", &[])
        .await
        .unwrap();
    assert_eq!(
        payload(&late.access_token)["exp"].as_i64(),
        Some(subject_exp)
    );

    // A shorter life may be asked for; a longer one is capped.
    let short = s
        .exchange_request(
            &s.orders,
            pb::ExchangeRequest {
                subject_token: pair.access_token.clone(),
                audience: "billing".into(),
                scopes: vec![],
                requested_lifetime: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
            },
        )
        .await
        .unwrap();
    let short_claims = payload(&short.access_token);
    assert_eq!(
        short_claims["exp"].as_i64().unwrap() - short_claims["iat"].as_i64().unwrap(),
        60
    );
    let long = s
        .exchange_request(
            &s.orders,
            pb::ExchangeRequest {
                subject_token: pair.access_token.clone(),
                audience: "billing".into(),
                scopes: vec![],
                requested_lifetime: Some(prost_types::Duration {
                    seconds: 10 * 24 * 3600,
                    nanos: 0,
                }),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        payload(&long.access_token)["exp"].as_i64(),
        Some(subject_exp)
    );

    // Past the subject token's exp, within the clock leeway, Validate
    // still accepts it, but a token expiring at once is of no use.
    s.server.clock.advance(ttl / 2 + Duration::from_secs(1));
    s.validate(&pair.access_token, "api").await.unwrap();
    assert_error(
        s.exchange(&s.orders, &pair.access_token, "billing", &[])
            .await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    // Past the leeway as well: expired, as Validate says.
    s.server.clock.advance(LEEWAY);
    assert_error(
        s.exchange(&s.orders, &pair.access_token, "billing", &[])
            .await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

async fn revoking_the_session_revokes_exchanged_tokens(backend: Backend) {
    let s = Setup::start(backend).await;

    // One session.
    let pair = s.issue("acme", "alice").await;
    let exchanged = s
        .exchange(&s.orders, &pair.access_token, "billing", &[])
        .await
        .unwrap();
    s.validate(&exchanged.access_token, "billing")
        .await
        .unwrap();
    s.revoke("acme", Target::SessionId(pair.session_id.clone()))
        .await;
    for token in [&exchanged.access_token, &pair.access_token] {
        assert_error(
            s.validate(token, "").await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
    }
    assert_error(
        s.exchange(&s.orders, &pair.access_token, "billing", &[])
            .await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );

    // Every session of the subject.
    let laptop = s.issue("acme", "alice").await;
    let phone = s.issue("acme", "alice").await;
    let from_laptop = s
        .exchange(&s.orders, &laptop.access_token, "billing", &[])
        .await
        .unwrap();
    let from_phone = s
        .exchange(&s.orders, &phone.access_token, "billing", &["write"])
        .await
        .unwrap();
    s.revoke(
        "acme",
        Target::AllSessions(pb::SubjectSessions {
            subject: "alice".into(),
        }),
    )
    .await;
    for token in [
        &from_laptop.access_token,
        &from_phone.access_token,
        &laptop.access_token,
        &phone.access_token,
    ] {
        assert_error(
            s.validate(token, "").await,
            Code::Unauthenticated,
            "SESSION_REVOKED",
        );
    }
}

async fn an_exchanged_token_can_be_exchanged_again_with_a_nested_actor(backend: Backend) {
    let s = Setup::start(backend).await;
    let pair = s.issue("acme", "alice").await;
    let for_billing = s
        .exchange(&s.orders, &pair.access_token, "billing", &["read", "write"])
        .await
        .unwrap();
    let for_ledger = s
        .exchange(&s.billing, &for_billing.access_token, "ledger", &["write"])
        .await
        .unwrap();
    assert_eq!(for_ledger.actors, ["billing", "orders"]);
    let claims = payload(&for_ledger.access_token);
    assert_eq!(
        claims["act"],
        json!({"sub": "billing", "act": {"sub": "orders"}})
    );
    assert_eq!(claims["aud"], "ledger");
    assert_eq!(claims["scope"], "write");
    assert_eq!(claims["sid"], pair.session_id.as_str());
    let validated = s
        .validate(&for_ledger.access_token, "ledger")
        .await
        .unwrap();
    let actor = validated.actor.expect("actor");
    assert_eq!(actor.subject, "billing");
    assert_eq!(actor.actor.expect("previous actor").subject, "orders");

    // billing passes on only what was sent to it, not what it sent on.
    assert_error(
        s.exchange(&s.billing, &for_ledger.access_token, "ledger", &["read"])
            .await,
        Code::PermissionDenied,
        "EXCHANGE_NOT_PERMITTED",
    );
    // Scopes narrow along the chain and never widen again.
    let read_only = s
        .exchange(&s.orders, &pair.access_token, "billing", &["read"])
        .await
        .unwrap();
    assert_error(
        s.exchange(&s.billing, &read_only.access_token, "ledger", &["write"])
            .await,
        Code::PermissionDenied,
        "SCOPE_NOT_HELD",
    );

    // The end of the chain dies with the session.
    s.revoke("acme", Target::SessionId(pair.session_id.clone()))
        .await;
    assert_error(
        s.validate(&for_ledger.access_token, "ledger").await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

async fn exchanges_outside_the_policy_are_refused(backend: Backend) {
    let s = Setup::start(backend).await;
    let pair = s.issue("acme", "alice").await;
    let not_permitted =
        |result| assert_error(result, Code::PermissionDenied, "EXCHANGE_NOT_PERMITTED");

    // A target audience the caller may not ask for.
    not_permitted(
        s.exchange(&s.orders, &pair.access_token, "ledger", &[])
            .await,
    );
    // A subject token addressed to another service than the caller's.
    not_permitted(
        s.exchange(&s.billing, &pair.access_token, "ledger", &[])
            .await,
    );
    // A caller with every permission but no exchange table.
    not_permitted(
        s.exchange(&s.login, &pair.access_token, "billing", &[])
            .await,
    );
    // A caller without the permission is refused before the RPC.
    assert_error(
        s.exchange(&s.reader, &pair.access_token, "billing", &[])
            .await,
        Code::PermissionDenied,
        "PERMISSION_NOT_GRANTED",
    );
    // A subject token of a tenant outside the caller's.
    let globex = s.issue("globex", "bob").await;
    assert_error(
        s.exchange(&s.orders, &globex.access_token, "billing", &[])
            .await,
        Code::PermissionDenied,
        "TENANT_NOT_PERMITTED",
    );
    // Scopes the subject token does not hold.
    let status = assert_error(
        s.exchange(&s.orders, &pair.access_token, "billing", &["read", "admin"])
            .await,
        Code::PermissionDenied,
        "SCOPE_NOT_HELD",
    );
    assert!(status.message().contains("admin"), "{status:?}");

    // Policy refusals are audited as refused requests; nothing was exchanged.
    let denied = s.server.audit_events(AuditKind::AccessDenied, 4).await;
    let exchange_denials: Vec<_> = denied
        .iter()
        .filter_map(|e| e.detail.as_deref())
        .filter(|d| d.starts_with("Exchange: EXCHANGE_NOT_PERMITTED"))
        .collect();
    assert_eq!(exchange_denials.len(), 3, "{denied:?}");
    assert!(s
        .server
        .audit_events(AuditKind::TokenExchanged, 0)
        .await
        .is_empty());
}

async fn bad_subject_tokens_and_bad_input_are_refused(backend: Backend) {
    let s = Setup::start(backend).await;
    let pair = s.issue("acme", "alice").await;

    // The subject token is checked as Validate checks it.
    assert_error(
        s.exchange(&s.orders, "garbage", "billing", &[]).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    let mut forged = pair.access_token.clone();
    forged.push('A');
    assert_error(
        s.exchange(&s.orders, &forged, "billing", &[]).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );

    // Input is checked like the other RPCs', field by field.
    assert_invalid(
        s.exchange(&s.orders, "", "billing", &[]).await,
        "subject_token",
    );
    assert_invalid(
        s.exchange(&s.orders, &pair.access_token, "", &[]).await,
        "audience",
    );
    assert_invalid(
        s.exchange(&s.orders, &pair.access_token, "billing", &["has space"])
            .await,
        "scopes",
    );
    assert_invalid(
        s.exchange(&s.orders, &"x".repeat(9000), "billing", &[])
            .await,
        "subject_token",
    );
    for seconds in [0, -5] {
        assert_invalid(
            s.exchange_request(
                &s.orders,
                pb::ExchangeRequest {
                    subject_token: pair.access_token.clone(),
                    audience: "billing".into(),
                    scopes: vec![],
                    requested_lifetime: Some(prost_types::Duration { seconds, nanos: 0 }),
                },
            )
            .await,
            "requested_lifetime",
        );
    }
    // Duplicate scopes are one scope.
    let dup = s
        .exchange(&s.orders, &pair.access_token, "billing", &["read", "read"])
        .await
        .unwrap();
    assert_eq!(dup.scopes, ["read"]);

    // Issue cannot fake an actor through extra claims.
    let mut request = issue_request("acme", "mallory");
    request.extra_claims = Some(prost_types::Struct {
        fields: [(
            "act".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("orders".into())),
            },
        )]
        .into(),
    });
    assert_invalid(
        s.server.client().issue(s.login.request(request)).await,
        "extra_claims",
    );

    // An expired subject token.
    s.server
        .clock
        .advance(s.server.config.tokens.access_ttl + LEEWAY);
    assert_error(
        s.exchange(&s.orders, &pair.access_token, "billing", &[])
            .await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

crate::on_both_backends!(
    the_exchanged_token_is_the_subjects_for_the_target_audience,
    the_exchanged_token_never_outlives_the_subject_token,
    revoking_the_session_revokes_exchanged_tokens,
    an_exchanged_token_can_be_exchanged_again_with_a_nested_actor,
    exchanges_outside_the_policy_are_refused,
    bad_subject_tokens_and_bad_input_are_refused,
);
