//! Group commit: concurrent issues and refreshes are applied in batches, and
//! every caller still gets the outcome a lone request would have had:
//! rotations, reuse detection and the tenant filter, side by side in the
//! same batches; one audit row per refresh; nothing of a refused request
//! written.
use futures::future::join_all;
use tonic::Code;

use crate::common::*;
use token_authority::access::Permission;
use token_authority::domain::audit::AuditKind;
use token_authority::proto as pb;

const SESSIONS: usize = 48;

fn refresh_request(token: &str) -> pb::RefreshRequest {
    pb::RefreshRequest {
        refresh_token: token.into(),
        device: None,
        binding: None,
    }
}

async fn concurrent_requests_share_batches_and_keep_their_own_outcomes(backend: Backend) {
    let gateway = TestCaller::new("acme-gateway", &[Permission::Refresh], &["acme"]);
    let admin = TestCaller::new("admin", &[Permission::All], &["*"]);
    let server = TestServer::start_with(backend, |c| {
        c.limits.refresh_per_session = None;
        c.auth.callers = vec![gateway.config.clone(), admin.config.clone()];
    })
    .await;

    // Issues at once: every one stored, each with its own session.
    let issued: Vec<pb::TokenPair> = join_all((0..SESSIONS).map(|i| {
        let mut client = server.client();
        let tenant = if i % 4 == 3 { "globex" } else { "acme" };
        let request = admin.request(issue_request(tenant, &format!("user-{i}")));
        async move { client.issue(request).await.map(|r| r.into_inner().tokens) }
    }))
    .await
    .into_iter()
    .map(|r| r.expect("issue").expect("tokens"))
    .collect();
    assert_eq!(server.session_rows().await, SESSIONS as u64);

    // Two rounds of concurrent refreshes of every session.
    let mut generations = vec![issued.clone()];
    for _ in 0..2 {
        let current = generations.last().unwrap();
        let next: Vec<pb::TokenPair> = join_all(current.iter().map(|pair| {
            let mut client = server.client();
            let request = admin.request(refresh_request(&pair.refresh_token));
            async move { client.refresh(request).await.map(|r| r.into_inner().tokens) }
        }))
        .await
        .into_iter()
        .map(|r| r.expect("refresh").expect("tokens"))
        .collect();
        generations.push(next);
    }

    // One concurrent round that mixes, in the same batches: rightful
    // refreshes (i % 4 == 0), replays of generation 0 (i % 4 == 1, theft:
    // the session is revoked), the acme-only gateway refreshing an acme
    // session (i % 4 == 2) and a globex one (i % 4 == 3, refused).
    let results = join_all((0..SESSIONS).map(|i| {
        let mut client = server.client();
        let (caller, token) = match i % 4 {
            1 => (&admin, &generations[0][i].refresh_token),
            2 | 3 => (&gateway, &generations[2][i].refresh_token),
            _ => (&admin, &generations[2][i].refresh_token),
        };
        let request = caller.request(refresh_request(token));
        async move { client.refresh(request).await.map(|r| r.into_inner()) }
    }))
    .await;
    for (i, result) in results.into_iter().enumerate() {
        match i % 4 {
            1 => {
                assert_error(result, Code::Unauthenticated, "TOKEN_REUSED");
            }
            3 => {
                assert_error(result, Code::PermissionDenied, "TENANT_NOT_PERMITTED");
            }
            _ => {
                let pair = result.expect("refresh").tokens.expect("tokens");
                let validate = pb::ValidateRequest {
                    access_token: pair.access_token,
                    ..Default::default()
                };
                server
                    .client()
                    .validate(admin.request(validate))
                    .await
                    .expect("the new access token validates");
            }
        }
    }

    // What the database holds: each session rotated exactly as often as
    // its own requests succeeded, the replayed ones revoked.
    for (i, pair) in issued.iter().enumerate() {
        let row = server
            .store
            .session(&pair.session_id)
            .await
            .unwrap()
            .expect("row");
        let (generation, revoked) = match i % 4 {
            0 | 2 => (3, false),
            1 => (2, true),
            _ => (2, false),
        };
        assert_eq!(row.generation, generation, "session {i}");
        assert_eq!(row.revoked_at.is_some(), revoked, "session {i}");
    }
    let refreshes = SESSIONS * 2 + SESSIONS / 2;
    assert_eq!(
        server
            .audit_events(AuditKind::Refreshed, refreshes)
            .await
            .len(),
        refreshes,
        "one audit row per refresh"
    );
    assert_eq!(
        server.audit_events(AuditKind::Issued, SESSIONS).await.len(),
        SESSIONS
    );
    let stats = server.store.group_commit_stats().expect("writers");
    assert!(
        stats.largest_batch > 1,
        "concurrent requests never shared a batch: {stats:?}"
    );
    assert!(stats.items >= (SESSIONS + refreshes) as u64, "{stats:?}");
}

async fn a_lone_request_is_committed_on_its_own(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "solo").await;
    let next = server.refresh(&pair.refresh_token).await.unwrap();
    server.validate(&next.access_token).await.unwrap();
    let stats = server.store.group_commit_stats().expect("writers");
    assert_eq!(stats.largest_batch, 1, "{stats:?}");
    assert_eq!(stats.batches, stats.items);
}

async fn concurrent_issues_of_one_subject_respect_its_cap(backend: Backend) {
    const CAP: usize = 3;
    let server = TestServer::start_with(backend, |c| {
        c.limits.max_sessions_per_subject = CAP as u32;
    })
    .await;
    let results = join_all((0..4 * CAP).map(|_| {
        let mut client = server.client();
        async move { client.issue(issue_request("acme", "busy")).await }
    }))
    .await;
    let issued = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        issued, CAP,
        "the cap counts sessions issued in the same batch"
    );
    for refused in results.into_iter().filter(Result::is_err) {
        assert_error(refused, Code::ResourceExhausted, "SESSION_LIMIT_REACHED");
    }
    assert_eq!(server.list("acme", "busy").await.len(), CAP);
    assert_eq!(server.session_rows().await, CAP as u64);
}

crate::on_both_backends!(
    concurrent_issues_of_one_subject_respect_its_cap,
    concurrent_requests_share_batches_and_keep_their_own_outcomes,
    a_lone_request_is_committed_on_its_own,
);
