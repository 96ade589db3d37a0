//! Several `token-authority serve` processes over one PostgreSQL database.
use std::time::{Duration, Instant};

use futures::future::join_all;
use tonic::Code;

use crate::common::*;
use crate::processes::Replica;
use token_authority::proto::{self as pb, revoke_request::Target};

const GRACE: (&str, &str) = ("TOKEN_AUTHORITY_TOKENS__REFRESH_RETRY_WINDOW", "1s");
/// 30 concurrent refreshes of one session are the point of one test here.
const NO_SESSION_LIMIT: (&str, &str) = ("TOKEN_AUTHORITY_LIMITS__REFRESH_PER_SESSION", "off");

async fn replicas(n: usize) -> Vec<Replica> {
    let url = fresh_postgres_database().await;
    // Started together on an empty database: they race to create the
    // signing key and the refresh-token secret.
    join_all((0..n).map(|_| Replica::start(&url, &[GRACE, NO_SESSION_LIMIT]))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_accept_each_others_tokens() {
    let replicas = replicas(3).await;
    // Within one state-sync interval every replica knows every key.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (i, issuer) in replicas.iter().enumerate() {
        let pair = issue_with(&mut issuer.client(), "acme", &format!("user-{i}")).await;
        for validator in &replicas {
            validate_with(&mut validator.client(), &pair.access_token)
                .await
                .unwrap_or_else(|e| panic!("token of replica {i} rejected: {e:?}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_across_replicas_behaves_as_on_one() {
    let replicas = replicas(3).await;
    let first = issue_with(&mut replicas[0].client(), "acme", "alice").await;
    let results = join_all((0..30).map(|i| {
        let mut client = replicas[i % replicas.len()].client();
        let token = first.refresh_token.clone();
        async move { refresh_with(&mut client, &token).await }
    }))
    .await;
    let pairs: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("no concurrent refresh fails"))
        .collect();
    assert!(pairs
        .iter()
        .all(|p| p.refresh_token == pairs[0].refresh_token));
    for (i, replica) in replicas.iter().enumerate() {
        let sessions = replica
            .client()
            .list_sessions(pb::ListSessionsRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .sessions;
        assert_eq!(sessions.len(), 1, "replica {i}");
        assert_eq!(sessions[0].refresh_count, 1, "exactly one rotation");
    }

    // After the grace window, the old token on another replica is a replay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_error(
        refresh_with(&mut replicas[1].client(), &first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );
    assert_error(
        refresh_with(&mut replicas[2].client(), &pairs[0].refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replica_within_a_second() {
    let replicas = replicas(3).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let pair = issue_with(&mut replicas[0].client(), "acme", &format!("bob-{round}")).await;
        for other in &replicas[1..] {
            validate_with(&mut other.client(), &pair.access_token)
                .await
                .unwrap();
        }
        let revoked_at = Instant::now();
        replicas[0]
            .client()
            .revoke(pb::RevokeRequest {
                tenant_id: "acme".into(),
                target: Some(Target::SessionId(pair.session_id.clone())),
                reason: "test".into(),
            })
            .await
            .unwrap();
        for other in &replicas[1..] {
            let mut client = other.client();
            loop {
                match validate_with(&mut client, &pair.access_token).await {
                    Ok(_) => {
                        assert!(
                            revoked_at.elapsed() < Duration::from_secs(5),
                            "never propagated"
                        );
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(status) => {
                        assert_eq!(reason(&status), "SESSION_REVOKED");
                        break;
                    }
                }
            }
        }
        worst = worst.max(revoked_at.elapsed());
    }
    eprintln!("worst cross-replica revocation delay: {worst:?}");
    assert!(worst <= Duration::from_secs(1), "took {worst:?}");
}
