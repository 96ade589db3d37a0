//! Refresh-token rotation: replay detection, the grace window, concurrency, forgeries.
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::future::join_all;
use tonic::Code;

use crate::common::*;

const PAST_GRACE: Duration = Duration::from_secs(11);

async fn replay_of_an_old_generation_revokes_the_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let gen0 = server.issue("acme", "alice").await;
    let mut pairs = vec![gen0.clone()];
    for _ in 0..3 {
        server.clock.advance(PAST_GRACE);
        let next = server
            .refresh(&pairs.last().unwrap().refresh_token)
            .await
            .unwrap();
        pairs.push(next);
    }
    let current = pairs.last().unwrap().clone();
    server.validate(&current.access_token).await.unwrap();

    // Generation 0, three rotations ago, comes back: theft.
    server.clock.advance(Duration::from_secs(1));
    assert_error(
        server.refresh(&gen0.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );

    // The whole session is gone: the legitimate holder's tokens too.
    assert_error(
        server.refresh(&current.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.validate(&current.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert!(server.list("acme", "alice").await.is_empty());
    // And replaying again says revoked, not reused.
    assert_error(
        server.refresh(&gen0.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

async fn replay_of_the_previous_token_after_the_retry_window_revokes(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.tokens.refresh_retry_window = Duration::from_secs(1)
    })
    .await;
    let first = server.issue("acme", "bob").await;
    let second = server.refresh(&first.refresh_token).await.unwrap();
    // The database's clock: real time on PostgreSQL, the manual one on SQLite.
    server.clock.advance(PAST_GRACE);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(
        server.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );
    assert_error(
        server.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

/// A client that lost the answer to its refresh, and comes back minutes
/// later with the token it still holds, gets the successor it missed; but
/// the old token is a replay as soon as that successor has been used.
async fn a_late_retry_gets_the_missed_successor_until_the_successor_is_used(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.issue("acme", "fred").await;
    let missed = server.refresh(&first.refresh_token).await.unwrap();
    server.clock.advance(Duration::from_secs(4 * 60));
    let retried = server.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, missed.refresh_token);
    server.validate(&retried.access_token).await.unwrap();
    let next = server.refresh(&retried.refresh_token).await.unwrap();
    assert_error(
        server.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );
    assert_error(
        server.refresh(&next.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

async fn repeat_within_the_grace_window_returns_the_same_successor(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.issue("acme", "carol").await;
    let a = server.refresh(&first.refresh_token).await.unwrap();
    server.clock.advance(Duration::from_secs(9));
    let b = server.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(a.refresh_token, b.refresh_token);
    server.validate(&b.access_token).await.unwrap();
    // The successor keeps working, and the session was not revoked.
    let c = server.refresh(&a.refresh_token).await.unwrap();
    server.validate(&c.access_token).await.unwrap();
    assert_eq!(server.list("acme", "carol").await[0].refresh_count, 2);
}

/// Moves a session's last rotation back in time, as if it had committed
/// `ago` earlier (the clock that matters is the database's).
async fn rotated_earlier(server: &TestServer, session_id: &str, ago: Duration) {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(server.config.database.url.as_str())
        .await
        .unwrap();
    let sql = format!(
        "UPDATE sessions SET rotated_at = rotated_at - {} WHERE id = '{session_id}'",
        ago.as_millis()
    );
    let changed = db.execute_unprepared(&sql).await.unwrap().rows_affected();
    assert_eq!(changed, 1);
    db.close().await.unwrap();
}

/// The default window (10 minutes) bounds how late a client may come back
/// with the token whose refresh it never saw answered.
async fn the_retry_window_is_counted_from_the_rotation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.issue("acme", "gwen").await;
    let missed = server.refresh(&first.refresh_token).await.unwrap();
    rotated_earlier(&server, &first.session_id, Duration::from_secs(9 * 60 + 50)).await;
    let retried = server.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, missed.refresh_token);
    rotated_earlier(&server, &first.session_id, Duration::from_secs(20)).await;
    assert_error(
        server.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );
}

async fn fifty_concurrent_refreshes_of_one_token_agree_on_one_successor(backend: Backend) {
    // 50 at once is far beyond the per-session rate limit, which is not
    // what this test is about.
    let server = TestServer::start_with(backend, |c| c.limits.refresh_per_session = None).await;
    let first = server.issue("acme", "dave").await;
    let results = join_all((0..50).map(|_| {
        let mut client = server.client();
        let token = first.refresh_token.clone();
        async move {
            client
                .refresh(token_authority::proto::RefreshRequest {
                    refresh_token: token,
                    device: None,
                    binding: None,
                })
                .await
                .map(|r| r.into_inner().tokens.unwrap())
        }
    }))
    .await;
    let pairs: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("no concurrent refresh fails"))
        .collect();
    let successor = &pairs[0].refresh_token;
    assert!(pairs.iter().all(|p| &p.refresh_token == successor));
    for p in &pairs {
        server.validate(&p.access_token).await.unwrap();
    }
    // Exactly one rotation happened, and the session stays usable.
    let sessions = server.list("acme", "dave").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].refresh_count, 1);
    server.clock.advance(PAST_GRACE);
    let next = server.refresh(successor).await.unwrap();
    server.validate(&next.access_token).await.unwrap();
}

async fn forged_and_garbled_tokens_are_rejected_without_revoking_anything(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut victim = server.issue("acme", "erin").await;
    for _ in 0..2 {
        server.clock.advance(PAST_GRACE);
        victim = server.refresh(&victim.refresh_token).await.unwrap();
    }
    let token = victim.refresh_token.clone();
    let raw = URL_SAFE_NO_PAD.decode(&token[4..]).unwrap();

    // Flip one bit of the MAC.
    let mut bad_mac = raw.clone();
    let last = bad_mac.len() - 1;
    bad_mac[last] ^= 1;
    // Rewrite the generation (bytes 16..24) to an older one, keeping the MAC:
    // the attack that would revoke the victim's session if a replay were
    // recognised by generation alone.
    let with_generation = |generation: u64| {
        let mut forged = raw.clone();
        forged[16..24].copy_from_slice(&generation.to_be_bytes());
        format!("rt1_{}", URL_SAFE_NO_PAD.encode(&forged))
    };
    // A token minted by another authority (another server secret).
    let foreign = TestServer::start(backend)
        .await
        .issue("acme", "erin")
        .await
        .refresh_token;

    for forged in [
        format!("rt1_{}", URL_SAFE_NO_PAD.encode(&bad_mac)),
        with_generation(0),
        with_generation(1),
        with_generation(u64::MAX),
        foreign,
        format!("{}x", &token[..token.len() - 1]),
        "rt1_AAAA".to_string(),
        "not a token".to_string(),
        token.to_uppercase(),
    ] {
        assert_error(
            server.refresh(&forged).await,
            Code::Unauthenticated,
            "TOKEN_INVALID",
        );
    }
    // The victim's session is intact.
    server.validate(&victim.access_token).await.unwrap();
    let next = server.refresh(&victim.refresh_token).await.unwrap();
    server.validate(&next.access_token).await.unwrap();
}

async fn forged_access_tokens_are_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "frank").await;
    let parts: Vec<&str> = pair.access_token.split('.').collect();
    let header = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    let enc = |s: &str| URL_SAFE_NO_PAD.encode(s.as_bytes());
    let tampered_payload = payload.replace("\"frank\"", "\"admin\"");
    let none_header = header.replace("EdDSA", "none");
    let hs_header = header.replace("EdDSA", "HS256");
    let other_server = TestServer::start(backend)
        .await
        .issue("acme", "frank")
        .await
        .access_token;
    for forged in [
        format!("{}.{}.{}", parts[0], enc(&tampered_payload), parts[2]),
        format!("{}.{}.", enc(&none_header), parts[1]),
        format!("{}.{}.{}", enc(&hs_header), parts[1], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        other_server,
        "a.b.c".into(),
        "garbage".into(),
    ] {
        assert_error(
            server.validate(&forged).await,
            Code::Unauthenticated,
            "TOKEN_INVALID",
        );
    }
    server.validate(&pair.access_token).await.unwrap();
}

crate::on_both_backends!(
    replay_of_an_old_generation_revokes_the_session,
    replay_of_the_previous_token_after_the_retry_window_revokes,
    a_late_retry_gets_the_missed_successor_until_the_successor_is_used,
    the_retry_window_is_counted_from_the_rotation,
    repeat_within_the_grace_window_returns_the_same_successor,
    fifty_concurrent_refreshes_of_one_token_agree_on_one_successor,
    forged_and_garbled_tokens_are_rejected_without_revoking_anything,
    forged_access_tokens_are_rejected,
);
