//! Abuse limits: refreshes per session, live sessions per subject, and
//! bounds on every field.
use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use token_authority::domain::audit::AuditKind;
use token_authority::proto as pb;

async fn refreshes_are_limited_per_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut current = server.issue("acme", "alice").await;
    // The default allows bursts of 10 per minute.
    for _ in 0..10 {
        current = server.refresh(&current.refresh_token).await.unwrap();
    }
    let status = assert_error(
        server.refresh(&current.refresh_token).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    let retry = status.get_details_retry_info().expect("RetryInfo");
    let delay = retry.retry_delay.expect("delay");
    assert!(
        delay > Duration::from_secs(5) && delay <= Duration::from_secs(6),
        "{delay:?}"
    );

    // The refused refresh rotated nothing, and other sessions are unaffected.
    let other = server.issue("acme", "bob").await;
    server.refresh(&other.refresh_token).await.unwrap();
    server.clock.advance(Duration::from_secs(6));
    server
        .refresh(&current.refresh_token)
        .await
        .expect("one more after a tenth of a minute");
}

/// Past the access-token lifetime (and the clock leeway), every token a
/// session minted at its start has expired: such sessions may be evicted.
const SESSIONS_EVICTABLE_AFTER: Duration = Duration::from_secs(15 * 60 + 60 + 1);

async fn issuing_past_the_session_cap_evicts_the_least_recently_used(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.limits.max_sessions_per_subject = 3).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(server.issue("acme", "alice").await);
        server.clock.advance(Duration::from_secs(1));
    }
    server.clock.advance(SESSIONS_EVICTABLE_AFTER);
    // All three are used again; the oldest becomes the most recently used.
    for i in [1, 2, 0] {
        sessions[i] = server.refresh(&sessions[i].refresh_token).await.unwrap();
        server.clock.advance(Duration::from_secs(1));
    }
    // Someone else's sessions do not count.
    server.issue("acme", "bob").await;
    server.issue("globex", "alice").await;

    let fourth = server.issue("acme", "alice").await;
    let mut listed: Vec<String> = server
        .list("acme", "alice")
        .await
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    listed.sort();
    let mut expected = vec![
        sessions[0].session_id.clone(),
        sessions[2].session_id.clone(),
        fourth.session_id.clone(),
    ];
    expected.sort();
    assert_eq!(listed, expected, "the least recently used (second) went");
    let evicted = &sessions[1];
    assert_error(
        server.validate(&evicted.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.refresh(&evicted.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    let audited = server.audit_events(AuditKind::Evicted, 1).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(
        audited[0].session_id.as_deref(),
        Some(evicted.session_id.as_str())
    );
    assert!(audited[0]
        .detail
        .as_deref()
        .is_some_and(|d| d.contains(&fourth.session_id)));
    assert_eq!(server.list("acme", "bob").await.len(), 1);
    assert_eq!(server.list("globex", "alice").await.len(), 1);
}

async fn concurrent_issues_never_exceed_the_cap(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.limits.max_sessions_per_subject = 5).await;
    let crowd = || {
        futures::future::join_all((0..20).map(|_| {
            let mut client = server.client();
            async move { client.issue(issue_request("acme", "crowd")).await }
        }))
    };
    let refused = |results: Vec<Result<tonic::Response<pb::IssueResponse>, tonic::Status>>| {
        results
            .into_iter()
            .filter_map(Result::err)
            .inspect(|status| {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(reason(status), "SESSION_LIMIT_REACHED");
            })
            .count()
    };
    // Young sessions are not evicted: 5 stored, 15 refused.
    assert_eq!(refused(crowd().await), 15);
    assert_eq!(server.list("acme", "crowd").await.len(), 5);
    // Once they are old enough, 5 new ones take their places.
    server.clock.advance(SESSIONS_EVICTABLE_AFTER);
    assert_eq!(refused(crowd().await), 15);
    assert_eq!(server.list("acme", "crowd").await.len(), 5);
    assert_eq!(server.audit_events(AuditKind::Evicted, 5).await.len(), 5);
}

/// A subject that logs in in a loop does not grow the database or every
/// replica's revoked set: past the cap, Issue is refused (with when to
/// retry) until a session is old enough to evict.
async fn a_login_loop_is_refused_at_the_cap_and_keeps_no_revoked_state(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.limits.max_sessions_per_subject = 3).await;
    for _ in 0..3 {
        server.issue("acme", "looper").await;
    }
    for _ in 0..50 {
        let status = server
            .client()
            .issue(issue_request("acme", "looper"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason(&status), "SESSION_LIMIT_REACHED");
        let retry = status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .expect("retry info");
        assert!(retry > Duration::from_secs(15 * 60) && retry <= SESSIONS_EVICTABLE_AFTER);
    }
    assert_eq!(server.session_rows().await, 3);
    assert_eq!(server.authority.validator().revoked_sessions().len(), 0);
    server.clock.advance(SESSIONS_EVICTABLE_AFTER);
    server.issue("acme", "looper").await;
    assert_eq!(server.list("acme", "looper").await.len(), 3);
}

async fn validate_and_list_bound_every_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let validate = |audience: String, tenant: String| {
        let mut client = server.client();
        let access_token = pair.access_token.clone();
        async move {
            client
                .validate(pb::ValidateRequest {
                    access_token,
                    expected_audience: audience,
                    expected_tenant_id: tenant,
                    presenter_certificate_thumbprint: String::new(),
                })
                .await
        }
    };
    assert_invalid(
        validate("a".repeat(257), String::new()).await,
        "expected_audience",
    );
    assert_invalid(
        validate(String::new(), "t".repeat(129)).await,
        "expected_tenant_id",
    );
    assert_invalid(
        validate("api\n".into(), String::new()).await,
        "expected_audience",
    );
    validate("api".into(), "acme".into()).await.unwrap();

    let list = server
        .client()
        .list_sessions(pb::ListSessionsRequest {
            tenant_id: "acme".into(),
            subject: "alice".into(),
            page_size: 10,
            page_token: "p".repeat(129),
        })
        .await;
    assert_invalid(list, "page_token");
}

crate::on_both_backends!(
    refreshes_are_limited_per_session,
    issuing_past_the_session_cap_evicts_the_least_recently_used,
    concurrent_issues_never_exceed_the_cap,
    a_login_loop_is_refused_at_the_cap_and_keeps_no_revoked_state,
    validate_and_list_bound_every_field,
);
