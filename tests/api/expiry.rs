//! Lifetimes, driven by the server's controllable clock.
use std::time::Duration;

use tonic::Code;

use crate::common::*;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn access_token_expires_after_its_lifetime(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let issued = pair.access_token_expires_at.unwrap().seconds;
    server.clock.advance(14 * MINUTE);
    server.validate(&pair.access_token).await.unwrap();
    // Valid for the clock leeway past exp, then expired.
    server
        .clock
        .advance(MINUTE + LEEWAY - Duration::from_secs(1));
    server.validate(&pair.access_token).await.unwrap();
    server.clock.advance(Duration::from_secs(1));
    assert_error(
        server.validate(&pair.access_token).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    // The refresh token still works and yields a fresh access token.
    let next = server.refresh(&pair.refresh_token).await.unwrap();
    assert!(next.access_token_expires_at.unwrap().seconds >= issued + 15 * 60);
    server.validate(&next.access_token).await.unwrap();
}

async fn idle_session_expires_and_activity_extends_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "bob").await;
    server.clock.advance(6 * DAY);
    let pair = server.refresh(&pair.refresh_token).await.unwrap();
    server.clock.advance(6 * DAY);
    let pair = server.refresh(&pair.refresh_token).await.unwrap();
    server.clock.advance(7 * DAY + MINUTE);
    assert_error(
        server.refresh(&pair.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_EXPIRED",
    );
    assert!(server.list("acme", "bob").await.is_empty());
}

async fn session_ends_at_its_absolute_lifetime_however_active(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.tokens.session_absolute_ttl = Duration::from_secs(3600);
    })
    .await;
    let mut pair = server.issue("acme", "carol").await;
    let absolute_end = pair.refresh_token_expires_at.unwrap().seconds;
    for _ in 0..5 {
        server.clock.advance(10 * MINUTE);
        pair = server.refresh(&pair.refresh_token).await.unwrap();
    }
    // 50 minutes in: the access token is capped at the session's end.
    assert_eq!(pair.access_token_expires_at.unwrap().seconds, absolute_end);
    assert_eq!(pair.refresh_token_expires_at.unwrap().seconds, absolute_end);
    server
        .clock
        .advance(10 * MINUTE + LEEWAY + Duration::from_secs(1));
    assert_error(
        server.refresh(&pair.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_EXPIRED",
    );
    assert_error(
        server.validate(&pair.access_token).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

async fn configured_retry_window_is_honoured(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.tokens.refresh_retry_window = Duration::from_secs(1)
    })
    .await;
    let first = server.issue("acme", "dave").await;
    server.refresh(&first.refresh_token).await.unwrap();
    // The window is on the database's clock: real time on PostgreSQL, the
    // service's (manual) clock on SQLite. Move both.
    server.clock.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(
        server.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );
}

crate::on_both_backends!(
    access_token_expires_after_its_lifetime,
    idle_session_expires_and_activity_extends_it,
    session_ends_at_its_absolute_lifetime_however_active,
    configured_retry_window_is_honoured,
);
