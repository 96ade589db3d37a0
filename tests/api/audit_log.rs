//! Reading the audit trail: `Admin/ListAuditEvents` filters by tenant,
//! subject, session, kind and time, pages newest first without gaps or
//! duplicates while events are written, shows a caller only its tenants'
//! events, refuses bad input with INVALID_ARGUMENT, and `token-authority
//! audit` prints the same trail from the database.
use std::collections::BTreeSet;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::common::*;
use token_authority::access::Permission;
use token_authority::proto::admin_client::AdminClient;
use token_authority::proto::{self as pb};

fn query() -> pb::ListAuditEventsRequest {
    pb::ListAuditEventsRequest::default()
}

async fn list(
    admin: &mut AdminClient<Channel>,
    request: pb::ListAuditEventsRequest,
) -> Result<pb::ListAuditEventsResponse, Status> {
    admin
        .list_audit_events(request)
        .await
        .map(|r| r.into_inner())
}

/// Every event matching `request`, one page after the other.
async fn all_pages(
    admin: &mut AdminClient<Channel>,
    mut request: pb::ListAuditEventsRequest,
) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    loop {
        let page = list(admin, request.clone())
            .await
            .expect("list audit events");
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        request.page_token = page.next_page_token;
    }
}

fn kinds(events: &[pb::AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn millis(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("timestamp");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn assert_newest_first(events: &[pb::AuditEvent]) {
    for pair in events.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            (millis(&a.occurred_at), a.id) > (millis(&b.occurred_at), b.id),
            "not newest first: {a:?} before {b:?}"
        );
    }
}

async fn filters_select_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin_client();
    let alice = server.issue("acme", "alice").await;
    server.clock.advance(Duration::from_secs(1));
    let bob = server.issue("acme", "bob").await;
    let carol = server.issue("globex", "carol").await;
    server.clock.advance(Duration::from_secs(1));
    let since = server.authority.now();
    let rotated = server.refresh(&alice.refresh_token).await.unwrap();
    server.revoke("acme", &bob.session_id).await;

    let everything = all_pages(&mut admin, query()).await;
    assert_newest_first(&everything);
    assert_eq!(
        kinds(&everything),
        [
            "revoked",
            "refreshed",
            "issued",
            "issued",
            "issued",
            "key_rotated"
        ]
    );
    let issued = &everything[2];
    assert_eq!(
        (issued.tenant_id.as_str(), issued.subject.as_str()),
        ("globex", "carol")
    );
    assert_eq!(issued.session_id, carol.session_id);
    assert_eq!(issued.caller, "anonymous");
    // No token or secret in any event.
    for event in &everything {
        let text = format!("{event:?}");
        for secret in [
            &alice.refresh_token,
            &alice.access_token,
            &rotated.refresh_token,
            &bob.refresh_token,
        ] {
            assert!(!text.contains(secret.as_str()), "{event:?}");
        }
    }

    let acme = all_pages(
        &mut admin,
        pb::ListAuditEventsRequest {
            tenant_id: "acme".into(),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&acme), ["revoked", "refreshed", "issued", "issued"]);
    assert!(acme.iter().all(|e| e.tenant_id == "acme"));

    let of_alice = all_pages(
        &mut admin,
        pb::ListAuditEventsRequest {
            tenant_id: "acme".into(),
            subject: "alice".into(),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&of_alice), ["refreshed", "issued"]);

    let of_bob_session = all_pages(
        &mut admin,
        pb::ListAuditEventsRequest {
            session_id: bob.session_id.clone(),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&of_bob_session), ["revoked", "issued"]);
    assert_eq!(of_bob_session[0].detail, "test (by anonymous)");
    assert_eq!(of_bob_session[0].caller, "anonymous");

    let revocations_and_rotations = all_pages(
        &mut admin,
        pb::ListAuditEventsRequest {
            kinds: vec!["revoked".into(), "key_rotated".into()],
            ..query()
        },
    )
    .await;
    assert_eq!(
        kinds(&revocations_and_rotations),
        ["revoked", "key_rotated"]
    );

    let timestamp = |ms: i64| {
        Some(prost_types::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap(),
        })
    };
    let recent = all_pages(
        &mut admin,
        pb::ListAuditEventsRequest {
            since: timestamp(since),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&recent), ["revoked", "refreshed"]);
    let earlier = all_pages(
        &mut admin,
        pb::ListAuditEventsRequest {
            until: timestamp(since),
            kinds: vec!["issued".into()],
            ..query()
        },
    )
    .await;
    assert_eq!(earlier.len(), 3);

    // Bad input is INVALID_ARGUMENT naming the field, never INTERNAL.
    let bad = |r: pb::ListAuditEventsRequest| {
        let mut admin = server.admin_client();
        async move { list(&mut admin, r).await }
    };
    assert_invalid(
        bad(pb::ListAuditEventsRequest {
            kinds: vec!["logged_in".into()],
            ..query()
        })
        .await,
        "kinds",
    );
    assert_invalid(
        bad(pb::ListAuditEventsRequest {
            since: timestamp(since),
            until: timestamp(since),
            ..query()
        })
        .await,
        "until",
    );
    assert_invalid(
        bad(pb::ListAuditEventsRequest {
            session_id: "not-a-session".into(),
            ..query()
        })
        .await,
        "session_id",
    );
    assert_invalid(
        bad(pb::ListAuditEventsRequest {
            tenant_id: "no spaces".into(),
            ..query()
        })
        .await,
        "tenant_id",
    );
}

async fn pages_have_no_gaps_or_duplicates_while_events_are_written(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin_client();
    // The clock stands still: many events share a millisecond, and only
    // the id tells them apart.
    for i in 0..23 {
        server.issue("acme", &format!("user-{i}")).await;
    }
    let before: Vec<i64> = list(
        &mut admin,
        pb::ListAuditEventsRequest {
            page_size: 1000,
            ..query()
        },
    )
    .await
    .unwrap()
    .events
    .iter()
    .map(|e| e.id)
    .collect();
    assert_eq!(before.len(), 24, "23 issued and the first key");

    let mut request = pb::ListAuditEventsRequest {
        page_size: 5,
        ..query()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = list(&mut admin, request.clone()).await.unwrap();
        assert!(page.events.len() <= 5);
        pages += 1;
        seen.extend(page.events.iter().map(|e| e.id));
        // Written between pages, at the same millisecond and later.
        server.issue("acme", &format!("late-{pages}")).await;
        server.clock.advance(Duration::from_millis(1));
        server.issue("globex", &format!("late-{pages}")).await;
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(pages, 5);
    assert_eq!(
        seen, before,
        "every event once, newest first, none of the later ones"
    );

    // The page size is clamped, not refused.
    let page = list(
        &mut admin,
        pb::ListAuditEventsRequest {
            page_size: 1_000_000,
            ..query()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.events.len(), 24 + 2 * 5);
    assert!(page.next_page_token.is_empty());

    // A page token is only good for the query it came from.
    let first = list(
        &mut admin,
        pb::ListAuditEventsRequest {
            page_size: 2,
            ..query()
        },
    )
    .await
    .unwrap();
    let token = first.next_page_token;
    assert!(!token.is_empty());
    for page_token in [
        "garbage".to_owned(),
        format!("{token}x"),
        token.chars().rev().collect(),
    ] {
        assert_invalid(
            list(
                &mut admin,
                pb::ListAuditEventsRequest {
                    page_token,
                    ..query()
                },
            )
            .await,
            "page_token",
        );
    }
    assert_invalid(
        list(
            &mut admin,
            pb::ListAuditEventsRequest {
                tenant_id: "acme".into(),
                page_token: token.clone(),
                ..query()
            },
        )
        .await,
        "page_token",
    );
    let next = list(
        &mut admin,
        pb::ListAuditEventsRequest {
            page_size: 2,
            page_token: token,
            ..query()
        },
    )
    .await
    .unwrap();
    assert_eq!(next.events.len(), 2);
    let position = |e: &pb::AuditEvent| (millis(&e.occurred_at), e.id);
    assert!(position(&next.events[0]) < position(&first.events[1]));
}

async fn callers_see_only_their_tenants_events(backend: Backend) {
    let issuer = TestCaller::new("issuer", &[Permission::Issue], &["*"]);
    let auditor = TestCaller::new("acme-auditor", &[Permission::ReadAudit], &["acme"]);
    let keeper = TestCaller::new("keeper", &[Permission::ListSigningKeys], &["*"]);
    let server = TestServer::start_with(backend, |config| {
        config.auth.callers = [&issuer, &auditor, &keeper]
            .map(|c| c.config.clone())
            .to_vec();
    })
    .await;
    let mut client = server.client();
    for (tenant, subject) in [("acme", "alice"), ("globex", "gina"), ("acme", "al")] {
        client
            .issue(issuer.request(issue_request(tenant, subject)))
            .await
            .unwrap();
    }
    let mut admin = server.admin_client();

    let seen = admin
        .list_audit_events(auditor.request(query()))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(kinds(&seen), ["issued", "issued"]);
    assert!(seen.iter().all(|e| e.tenant_id == "acme"), "{seen:?}");
    assert!(seen.iter().all(|e| e.caller == "issuer"), "{seen:?}");
    let subjects: BTreeSet<_> = seen.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, BTreeSet::from(["al", "alice"]));

    let own = admin
        .list_audit_events(auditor.request(pb::ListAuditEventsRequest {
            tenant_id: "acme".into(),
            ..query()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.events, seen);

    assert_error(
        admin
            .list_audit_events(auditor.request(pb::ListAuditEventsRequest {
                tenant_id: "globex".into(),
                ..query()
            }))
            .await,
        Code::PermissionDenied,
        "TENANT_NOT_PERMITTED",
    );
    // Another caller's subject does not widen the view.
    let gina = admin
        .list_audit_events(auditor.request(pb::ListAuditEventsRequest {
            subject: "gina".into(),
            ..query()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(gina.events.is_empty(), "{gina:?}");

    assert_error(
        admin.list_audit_events(keeper.request(query())).await,
        Code::PermissionDenied,
        "PERMISSION_NOT_GRANTED",
    );
    assert_error(
        admin.list_audit_events(query()).await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
}

/// `token-authority audit` on the server's database, as an operator runs it.
fn audit_cli(server: &TestServer, args: &[&str]) -> String {
    let kek = server.config.keys.kek_file.as_ref().expect("kek file");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_token-authority"))
        .arg("audit")
        .args(args)
        .arg("--database-url")
        .arg(&server.config.database.url)
        .env_remove("TOKEN_AUTHORITY_CONFIG")
        .env_remove("TOKEN_AUTHORITY_KEK")
        .env("TOKEN_AUTHORITY_KEYS__KEK_FILE", kek)
        .env("TOKEN_AUTHORITY_LOG__FILTER", "warn")
        .output()
        .expect("token-authority runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn the_cli_prints_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server.issue("acme", "alice").await;
    server.issue("globex", "gina").await;
    server.revoke("acme", &alice.session_id).await;

    let table = audit_cli(&server, &["--session", &alice.session_id, "--since", "1h"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two events:\n{table}");
    assert!(lines[0].starts_with("occurred at"), "{table}");
    assert!(
        lines[1].contains("revoked") && lines[1].contains(&alice.session_id),
        "{table}"
    );
    assert!(
        lines[2].contains("issued") && lines[2].contains("anonymous"),
        "{table}"
    );

    let json = audit_cli(&server, &["--tenant", "acme", "--kind", "issued", "--json"]);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events.len(), 1, "{json}");
    assert_eq!(events[0]["kind"], "issued");
    assert_eq!(events[0]["tenant_id"], "acme");
    assert_eq!(events[0]["subject"], "alice");
    assert_eq!(events[0]["session_id"], alice.session_id.as_str());
    assert_eq!(events[0]["caller"], "anonymous");

    let limited = audit_cli(&server, &["--limit", "2", "--json"]);
    assert_eq!(limited.lines().count(), 2, "{limited}");
    let none = audit_cli(&server, &["--until", "2000-01-01T00:00:00Z", "--json"]);
    assert!(none.is_empty(), "{none}");
}

crate::on_both_backends!(
    filters_select_events,
    pages_have_no_gaps_or_duplicates_while_events_are_written,
    callers_see_only_their_tenants_events,
    the_cli_prints_events,
);
