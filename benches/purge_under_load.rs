//! Purge of a large backlog while Refresh runs: purge rows/s, and Refresh
//! latency with and without the purge, measured in one run.
//!
//!   cargo bench --bench purge_under_load                      # SQLite
//!   scripts/with-postgres.sh cargo bench --bench purge_under_load   # + PostgreSQL
//!
//! BACKLOG (default 200000; `BACKLOG=1000000` for the 1M-row target) expired
//! sessions and AUDIT_BACKLOG (default 0) audit events past their retention
//! are inserted directly (BATCH overrides `purge.batch_size`), then
//! CONCURRENCY (default 32) clients refresh their own sessions in a loop for
//! SECONDS (default 5) without a purge, then again for as long as the purge runs.
// Test and benchmark code: a panic is a failed run, not an outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use token_authority::app::App;
use token_authority::config::Config;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{self as pb};
use token_authority::verify::clock::{Clock, ManualClock};
use tokio::net::TcpListener;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too (without `--bench`):
    // then run a tiny version, as a check that the benchmark still works.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let backlog = if smoke {
        300
    } else {
        env_or("BACKLOG", 200_000)
    };
    let concurrency = if smoke {
        4
    } else {
        env_or("CONCURRENCY", 32) as usize
    };
    let seconds = if smoke { 1 } else { env_or("SECONDS", 5) };
    let audit_backlog = if smoke {
        100
    } else {
        env_or("AUDIT_BACKLOG", 0)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut backends = vec![(
        "sqlite",
        format!("sqlite://{}/bench.db", dir.path().display()),
    )];
    if let Ok(admin) = std::env::var("TA_TEST_POSTGRES_URL") {
        let db = Database::connect(admin.as_str()).await.unwrap();
        db.execute_unprepared("DROP DATABASE IF EXISTS ta_bench")
            .await
            .unwrap();
        db.execute_unprepared("CREATE DATABASE ta_bench")
            .await
            .unwrap();
        let (base, _) = admin.rsplit_once('/').unwrap();
        backends.push(("postgres", format!("{base}/ta_bench")));
    }
    println!(
        "backlog {backlog} expired sessions + {audit_backlog} old audit events, {concurrency} concurrent refreshers, {seconds} s per phase\n"
    );
    println!(
        "{:<9} {:>12} {:>11} {:>11} {:>12} {:>11} {:>11} {:>12} {:>9}",
        "backend",
        "refresh/s",
        "p50 ms",
        "p99 ms",
        "refresh/s*",
        "p50 ms*",
        "p99 ms*",
        "purge rows/s",
        "p99 ratio"
    );
    for (name, url) in backends {
        run(
            name,
            &url,
            backlog,
            audit_backlog,
            concurrency,
            Duration::from_secs(seconds),
        )
        .await;
    }
    println!("\n* while the purge runs (p99 ratio: during / without)");
}

async fn run(
    name: &str,
    url: &str,
    backlog: u64,
    audit_backlog: u64,
    concurrency: usize,
    phase: Duration,
) {
    let kek_dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.url = url.to_owned();
    config.purge.enabled = false;
    // BATCH: rows per purge statement (default: the config's default).
    if let Ok(batch) = std::env::var("BATCH") {
        config.purge.batch_size = batch.parse().unwrap();
    }
    config.keys.kek_file = Some(kek_dir.path().join("kek"));
    // Throughput, not policy, is measured here.
    config.limits.refresh_per_session = None;
    config.limits.caller_rate = None;
    let clock = Arc::new(ManualClock::starting_now());
    let app = App::build(config, clock.clone()).await.unwrap();
    let purger = app.purger.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, None, async {
        let _ = stopped.await;
    }));
    seed_expired(url, backlog, clock.now_millis()).await;
    seed_old_audit(url, audit_backlog, clock.now_millis()).await;

    let client = TokenAuthorityClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..concurrency {
        let pair = client
            .clone()
            .issue(pb::IssueRequest {
                tenant_id: "bench".into(),
                subject: format!("user-{i}"),
                audience: "api".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .tokens
            .unwrap();
        tokens.push(pair.refresh_token);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(phase).await;
            stop.store(true, Ordering::SeqCst);
        })
    };
    let baseline = refresh_load(&client, &mut tokens, &stop).await;
    timer.await.unwrap();
    // The second phase lasts exactly as long as the purge.
    let stop = Arc::new(AtomicBool::new(false));
    let purge = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let report = purger.purge_once().await.unwrap();
            stop.store(true, Ordering::SeqCst);
            (report.total(), started.elapsed())
        })
    };
    let during = refresh_load(&client, &mut tokens, &stop).await;
    let (rows, took) = purge.await.unwrap();
    assert_eq!(
        rows,
        backlog + audit_backlog,
        "purge deleted the whole backlog"
    );
    println!(
        "{:<9} {:>12.0} {:>11.2} {:>11.2} {:>12.0} {:>11.2} {:>11.2} {:>12.0} {:>9.2}",
        name,
        baseline.rate,
        baseline.p50,
        baseline.p99,
        during.rate,
        during.p50,
        during.p99,
        rows as f64 / took.as_secs_f64(),
        during.p99 / baseline.p99,
    );
    let _ = stop_server.send(());
    server.await.unwrap().unwrap();
}

struct Latency {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// Each client refreshes its own session with the token it got last, until
/// `stop` is set.
async fn refresh_load(
    client: &TokenAuthorityClient<tonic::transport::Channel>,
    tokens: &mut Vec<String>,
    stop: &Arc<AtomicBool>,
) -> Latency {
    let started = Instant::now();
    let workers: Vec<_> = tokens
        .drain(..)
        .map(|mut token| {
            let mut client = client.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let pair = client
                        .refresh(pb::RefreshRequest {
                            refresh_token: token.clone(),
                            device: None,
                            binding: None,
                        })
                        .await
                        .expect("refresh")
                        .into_inner()
                        .tokens
                        .unwrap();
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    token = pair.refresh_token;
                }
                (latencies, token)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        let (latencies, token) = w.await.unwrap();
        all.extend(latencies);
        tokens.push(token);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Latency {
        rate: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// Inserts `n` sessions that expired an hour ago, in multi-row INSERTs.
async fn seed_expired(url: &str, n: u64, now: i64) {
    let db = Database::connect(url).await.unwrap();
    let expired = now - 3_600_000;
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(500);
        let values: Vec<String> = (0..chunk)
            .map(|i| {
                format!(
                    "('{}', 'bench', 'seed-{}', 'api', '', 0, X'00', {e}, {e}, {e}, {e}, '', '', '')",
                    uuid::Uuid::new_v4(),
                    done + i,
                    e = expired
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO sessions (id, tenant_id, subject, audience, scopes, generation, token_digest, created_at, last_used_at, expires_at, idle_expires_at, device_name, user_agent, ip) VALUES {}",
            values.join(",")
        );
        let sql = if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            sql.replace("X'00'", "'\\x00'::bytea")
        } else {
            sql
        };
        db.execute_unprepared(&sql).await.unwrap();
        done += chunk;
    }
    db.close().await.unwrap();
}

/// Inserts `n` audit events from 31 days ago (past the default retention).
async fn seed_old_audit(url: &str, n: u64, now: i64) {
    let db = Database::connect(url).await.unwrap();
    let old = now - 31 * 24 * 3_600_000;
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(1000);
        let values: Vec<String> = (0..chunk)
            .map(|i| {
                format!(
                    "({old}, 'refreshed', 'bench', 'seed-{}', NULL, NULL)",
                    done + i
                )
            })
            .collect();
        db.execute_unprepared(&format!(
            "INSERT INTO audit_events (occurred_at, kind, tenant_id, subject, session_id, detail) VALUES {}",
            values.join(",")
        ))
        .await
        .unwrap();
        done += chunk;
    }
    db.close().await.unwrap();
}
