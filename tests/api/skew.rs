//! Replicas whose clocks disagree by minutes, over one PostgreSQL database:
//! each replica runs in-process with a clock of its own (the service's
//! `Clock`), so no decision may depend on two of them agreeing.
use std::time::{Duration, Instant};

use futures::future::join_all;
use tonic::Code;

use crate::common::*;

const MINUTE: i64 = 60_000;

/// Three replicas: on time, five minutes ahead, five minutes behind. The
/// leeway covers the largest difference (ten minutes), as the README says
/// it must.
async fn skewed_replicas(offsets: [i64; 3]) -> Vec<TestServer> {
    let first = TestServer::start_with(Backend::Postgres, |c| {
        c.tokens.clock_leeway = Duration::from_secs(11 * 60);
        c.limits.refresh_per_session = None;
    })
    .await;
    let mut replicas = vec![];
    for offset in &offsets[1..] {
        replicas.push(first.replica(*offset).await);
    }
    replicas.insert(0, first);
    replicas
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// How long until each other replica answers SESSION_REVOKED for a session
/// revoked on `from`.
async fn propagation(replicas: &[TestServer], from: usize, rounds: usize) -> Vec<Duration> {
    let mut delays = Vec::new();
    for round in 0..rounds {
        let pair = replicas[from]
            .issue("acme", &format!("prop-{from}-{round}"))
            .await;
        for r in replicas {
            r.validate(&pair.access_token)
                .await
                .expect("valid everywhere");
        }
        let revoked_at = Instant::now();
        replicas[from].revoke("acme", &pair.session_id).await;
        let waits = replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != from)
            .map(|(_, r)| {
                let token = pair.access_token.clone();
                async move {
                    loop {
                        match r.validate(&token).await {
                            Ok(_) => {
                                assert!(
                                    revoked_at.elapsed() < Duration::from_secs(5),
                                    "never propagated"
                                );
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Err(status) => {
                                assert_eq!(reason(&status), "SESSION_REVOKED");
                                return revoked_at.elapsed();
                            }
                        }
                    }
                }
            });
        delays.extend(join_all(waits).await);
    }
    delays.sort();
    delays
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_every_replica_at_once_whatever_their_clocks() {
    for (label, offsets) in [
        ("no skew", [0, 0, 0]),
        ("±5 min", [0, 5 * MINUTE, -5 * MINUTE]),
    ] {
        let replicas = skewed_replicas(offsets).await;
        let mut delays = Vec::new();
        for from in 0..replicas.len() {
            delays.extend(propagation(&replicas, from, 7).await);
        }
        delays.sort();
        let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
        eprintln!(
            "revocation propagation, 3 replicas, {label}: p50 {p50:?}, p99 {p99:?}, max {:?} ({} samples)",
            delays[delays.len() - 1],
            delays.len()
        );
        // Pushed (LISTEN/NOTIFY), not polled: far below the 250 ms poll.
        assert!(p99 < Duration::from_millis(500), "{label}: p99 {p99:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_across_skewed_replicas_share_one_successor_and_replay_is_still_caught() {
    let replicas = skewed_replicas([0, 5 * MINUTE, -5 * MINUTE]).await;
    let first = replicas[0].issue("acme", "tabs").await;
    // Tokens minted on each replica validate on every other one.
    for minter in &replicas {
        let pair = minter.issue("acme", "minted").await;
        for validator in &replicas {
            validator
                .validate(&pair.access_token)
                .await
                .expect("validates everywhere");
        }
    }
    // The same token refreshed on all three (two tabs, a retry elsewhere):
    // one rotation, one successor, and nobody logged out.
    let a = replicas[0].refresh(&first.refresh_token).await.unwrap();
    let b = replicas[1].refresh(&first.refresh_token).await.unwrap();
    let c = replicas[2].refresh(&first.refresh_token).await.unwrap();
    assert_eq!(a.refresh_token, b.refresh_token);
    assert_eq!(a.refresh_token, c.refresh_token);
    for r in &replicas {
        r.validate(&c.access_token).await.unwrap();
        assert_eq!(r.list("acme", "tabs").await[0].refresh_count, 1);
    }
    // The successor is used on the replica behind; the old token then
    // comes back on the one ahead: a replay, whatever the clocks say.
    let next = replicas[2].refresh(&a.refresh_token).await.unwrap();
    assert_error(
        replicas[1].refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );
    for r in &replicas {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match r.validate(&next.access_token).await {
                Err(status) => {
                    assert_eq!(reason(&status), "SESSION_REVOKED");
                    break;
                }
                Ok(_) => {
                    assert!(Instant::now() < deadline, "revocation never arrived");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}
