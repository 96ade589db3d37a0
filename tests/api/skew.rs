//! Replicas whose clocks disagree by minutes, over one PostgreSQL database:
//! each replica runs in-process with a clock of its own (the service's
//! `Clock`), so no decision may depend on two of them agreeing.
use std::time::{Duration, Instant};

use futures::future::join_all;
use token_authority::verify::clock::{Clock, SystemClock};
use tonic::Code;

use crate::common::*;
use crate::processes::Replica;

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

/// Validates `token` until it answers SESSION_REVOKED; panics if that
/// takes `bound` or more since `since`. Returns the time since `since`.
async fn until_revoked(
    mut client: Client,
    token: &str,
    since: Instant,
    bound: Duration,
) -> Duration {
    loop {
        match validate_with(&mut client, token).await {
            Ok(_) => {
                assert!(since.elapsed() < bound, "revocation never arrived");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(status) => {
                assert_eq!(reason(&status), "SESSION_REVOKED");
                return since.elapsed();
            }
        }
    }
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
                until_revoked(
                    r.client(),
                    &pair.access_token,
                    revoked_at,
                    Duration::from_secs(5),
                )
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
        until_revoked(
            r.client(),
            &next.access_token,
            Instant::now(),
            Duration::from_secs(2),
        )
        .await;
    }
}

/// Debian's libfaketime, installed by scripts/install-test-tools.sh.
fn faketime_lib() -> String {
    let lib = std::env::var("TA_TEST_FAKETIME_LIB")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".into());
    assert!(
        std::path::Path::new(&lib).exists(),
        "{lib} is missing: run scripts/install-test-tools.sh (Debian package libfaketime)"
    );
    lib
}

/// The same with real processes whose whole clock is shifted by
/// libfaketime (what the kernel tells them, not our `Clock`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_replicas_under_libfaketime_agree_on_sessions_and_revocations() {
    let url = fresh_postgres_database().await;
    let lib = faketime_lib();
    let common = [
        ("TOKEN_AUTHORITY_TOKENS__CLOCK_LEEWAY", "11m"),
        ("TOKEN_AUTHORITY_LIMITS__REFRESH_PER_SESSION", "off"),
    ];
    let mut replicas = Vec::new();
    for shift in [None, Some("+5m"), Some("-5m")] {
        let mut env = common.to_vec();
        if let Some(shift) = shift {
            env.extend([
                ("LD_PRELOAD", lib.as_str()),
                ("FAKETIME", shift),
                // Timers and timeouts keep real time.
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ]);
        }
        replicas.push(Replica::start(&url, &env).await);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let now = SystemClock.now_millis() / 1000;
    // The clocks really are shifted, and tokens validate everywhere.
    for (replica, shift) in replicas.iter().zip([0, 300, -300]) {
        let pair = issue_with(&mut replica.client(), "acme", "minted").await;
        let claims = validate_with(&mut replica.client(), &pair.access_token)
            .await
            .unwrap();
        let iat = claims.issued_at.unwrap().seconds;
        assert!(
            (iat - now - shift).abs() <= 5,
            "iat {iat}, now {now}, shift {shift}"
        );
        for other in &replicas {
            validate_with(&mut other.client(), &pair.access_token)
                .await
                .expect("validates on every replica");
        }
    }
    // Two tabs on the replicas behind and ahead: one successor.
    let first = issue_with(&mut replicas[0].client(), "acme", "tabs").await;
    let a = refresh_with(&mut replicas[2].client(), &first.refresh_token)
        .await
        .unwrap();
    let b = refresh_with(&mut replicas[1].client(), &first.refresh_token)
        .await
        .unwrap();
    assert_eq!(a.refresh_token, b.refresh_token);
    // A revocation on the replica ahead reaches the one behind at once.
    let revoked_at = Instant::now();
    revoke_with(&mut replicas[1].client(), "acme", &first.session_id).await;
    for replica in [&replicas[0], &replicas[2]] {
        until_revoked(
            replica.client(),
            &a.access_token,
            revoked_at,
            Duration::from_secs(2),
        )
        .await;
    }
    eprintln!(
        "libfaketime replicas: revocation everywhere in {:?}",
        revoked_at.elapsed()
    );
}
