//! Database outages and crashes, with real processes.
use std::time::{Duration, Instant};

use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use crate::processes::{
    refresh_load_until_killed, session_rows, PgServer, RefreshingClient, Replica,
};
use token_authority::proto::{self as pb, revoke_request::Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_writes_fast_keeps_validating_and_recovers() {
    let pg = PgServer::start();
    let replica = Replica::start(
        &pg.url(),
        &[
            ("TOKEN_AUTHORITY_REQUEST_TIMEOUT", "3s"),
            ("TOKEN_AUTHORITY_DATABASE__ACQUIRE_TIMEOUT", "1s"),
            ("TOKEN_AUTHORITY_DATABASE__CONNECT_TIMEOUT", "1s"),
        ],
    )
    .await;
    let mut client = replica.client();
    let pair = client
        .issue(issue_request("acme", "alice"))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();

    pg.stop();

    // Validate answers from memory.
    for _ in 0..3 {
        client
            .validate(pb::ValidateRequest {
                access_token: pair.access_token.clone(),
                ..Default::default()
            })
            .await
            .expect("validate works without the database");
    }
    // Writes fail fast with UNAVAILABLE and a retry hint, never hang.
    let started = Instant::now();
    let status = refresh_with(&mut client, &pair.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "STORAGE_UNAVAILABLE");
    assert!(status.get_details_retry_info().is_some());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let issue = client.issue(issue_request("acme", "bob")).await;
    assert_eq!(issue.unwrap_err().code(), Code::Unavailable);
    let revoke = client
        .revoke(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(Target::SessionId(pair.session_id.clone())),
            reason: String::new(),
        })
        .await;
    assert_eq!(revoke.unwrap_err().code(), Code::Unavailable);

    pg.start_again();

    // No restart of the service: it reconnects by itself, and the failed
    // rotation did not happen, so the old refresh token still works.
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = loop {
        match refresh_with(&mut client, &pair.refresh_token).await {
            Ok(next) => break next,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("did not recover: {status:?}\n{}", replica.log()),
        }
    };
    validate_with(&mut client, &next.access_token)
        .await
        .unwrap();
    client.issue(issue_request("acme", "bob")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_waits_for_a_database_that_is_down_at_start() {
    let pg = PgServer::start();
    pg.stop();
    let url = pg.url();
    let starting = tokio::spawn(async move { Replica::start(&url, &[]).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!starting.is_finished(), "serving without a database");
    pg.start_again();
    let replica = starting.await.unwrap();
    replica
        .client()
        .issue(issue_request("acme", "alice"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_refresh_load_loses_no_rotation() {
    const SESSIONS: usize = 16;
    let url = fresh_postgres_database().await;
    let mut replica = Replica::start(
        &url,
        &[("TOKEN_AUTHORITY_LIMITS__REFRESH_PER_SESSION", "off")],
    )
    .await;
    let results = refresh_load_until_killed(&mut replica, SESSIONS).await;

    // Each session's row is at the generation its client last saw, or one
    // past it (rotated, but the response died with the process): never
    // further, never behind, never two rows.
    let rows = session_rows(&url).await;
    assert_eq!(rows.len(), SESSIONS);

    let replica = replica.restart().await;
    let mut client = replica.client();
    for RefreshingClient { last, rotations } in results {
        let claims = client
            .validate(pb::ValidateRequest {
                access_token: last.access_token.clone(),
                ..Default::default()
            })
            .await
            .expect("access token received before the crash still validates")
            .into_inner()
            .claims
            .unwrap();
        let row = rows.iter().find(|r| r.subject == claims.subject).unwrap();
        assert!(
            row.generation == i64::from(rotations) || row.generation == i64::from(rotations) + 1,
            "{}: client saw generation {rotations}, database has {}",
            claims.subject,
            row.generation
        );
        // The refresh token the client holds works (within the grace window
        // if its last rotation committed without reaching it).
        let next = refresh_with(&mut client, &last.refresh_token)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", claims.subject));
        validate_with(&mut client, &next.access_token)
            .await
            .unwrap();
    }
}
