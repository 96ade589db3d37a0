//! The purge deletes exactly what expired or aged out, in batches, and
//! nothing that is still usable.
use std::time::Duration;

use tonic::Code;

use crate::common::*;
use token_authority::proto as pb;
use token_authority::storage::purge::PurgeKind;

const HOUR: Duration = Duration::from_secs(3600);

async fn issue_many(server: &TestServer, prefix: &str, n: usize) -> Vec<pb::TokenPair> {
    let mut pairs = Vec::new();
    for i in 0..n {
        pairs.push(server.issue("acme", &format!("{prefix}-{i}")).await);
    }
    pairs
}

async fn purge_deletes_exactly_what_is_due(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.tokens.session_absolute_ttl = 72 * HOUR;
        c.tokens.session_idle_ttl = 48 * HOUR;
        c.purge.enabled = false;
        c.purge.batch_size = 4;
        c.purge.batch_pause = Duration::ZERO;
        c.purge.revoked_retention = HOUR;
        c.purge.audit_retention = 120 * HOUR;
    })
    .await;

    // t = 0: 12 sessions that will go idle, 9 that are revoked at once.
    let idle = issue_many(&server, "idle", 12).await;
    let revoked = issue_many(&server, "revoked", 9).await;
    for pair in &revoked {
        server.revoke("acme", &pair.session_id).await;
    }
    // t = 36 h: 3 of the idle ones stay active; 5 new sessions.
    server.clock.advance(36 * HOUR);
    let mut active = Vec::new();
    for pair in &idle[..3] {
        active.push(server.refresh(&pair.refresh_token).await.unwrap());
    }
    let fresh = issue_many(&server, "fresh", 5).await;
    // t = 59.5 h: two more revoked, within their retention at the purge below.
    server.clock.advance(Duration::from_secs(23 * 3600 + 1800));
    let recent = issue_many(&server, "recent", 2).await;
    for pair in &recent {
        server.revoke("acme", &pair.session_id).await;
    }
    assert_eq!(server.session_rows().await, 12 + 9 + 5 + 2);

    // t = 60 h: 9 idle (unused since t = 0) and 9 long-revoked are due.
    server.clock.advance(Duration::from_secs(1800));
    let report = server.purger.purge_once().await.unwrap();
    assert!(!report.skipped);
    assert_eq!(report.deleted(PurgeKind::SessionsIdle), 9);
    assert_eq!(report.deleted(PurgeKind::SessionsRevoked), 9);
    assert_eq!(report.deleted(PurgeKind::SessionsExpired), 0);
    assert_eq!(report.deleted(PurgeKind::AuditEvents), 0);
    assert_eq!(server.session_rows().await, 3 + 5 + 2);
    // Survivors are untouched and usable; the recently revoked still say so.
    for pair in active.iter().chain(&fresh) {
        let next = server.refresh(&pair.refresh_token).await.unwrap();
        server.validate(&next.access_token).await.unwrap();
    }
    assert_error(
        server.refresh(&recent[0].refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    // A purged session's token is answered as expired, not as a forgery.
    assert_error(
        server.refresh(&idle[5].refresh_token).await,
        Code::Unauthenticated,
        "SESSION_EXPIRED",
    );

    // Nothing more is due: a second purge deletes nothing.
    assert_eq!(server.purger.purge_once().await.unwrap().total(), 0);

    // t = 73 h: the 3 active sessions reach their absolute end (72 h); the
    // recently revoked have passed their retention.
    server.clock.advance(13 * HOUR);
    let report = server.purger.purge_once().await.unwrap();
    assert_eq!(report.deleted(PurgeKind::SessionsExpired), 3);
    assert_eq!(report.deleted(PurgeKind::SessionsRevoked), 2);
    assert_eq!(report.deleted(PurgeKind::SessionsIdle), 0);
    assert_eq!(server.session_rows().await, 5);

    // t = 130 h: the fresh sessions (issued at 36 h) ended at 108 h;
    // audit events from t = 0 (the first signing key, 12 + 9 issued, 9
    // revoked) are past 120 h.
    server.clock.advance(57 * HOUR);
    let report = server.purger.purge_once().await.unwrap();
    assert_eq!(report.deleted(PurgeKind::SessionsExpired), 5);
    assert_eq!(report.deleted(PurgeKind::AuditEvents), 31);
    assert_eq!(server.session_rows().await, 0);
}

crate::on_both_backends!(purge_deletes_exactly_what_is_due);

/// Replicas sharing a PostgreSQL database purge one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_purges_at_a_time() {
    let server = TestServer::start_with(Backend::Postgres, |c| c.purge.enabled = false).await;
    let held = server
        .store
        .try_purge_lock()
        .await
        .unwrap()
        .expect("lock is free");
    assert!(server.purger.purge_once().await.unwrap().skipped);
    held.release().await.unwrap();
    assert!(!server.purger.purge_once().await.unwrap().skipped);
}
