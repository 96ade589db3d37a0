//! The schema serves the hot path: a refresh is a HOT update on PostgreSQL
//! (it changes no indexed column), and every hot statement uses the index
//! meant for it on both backends, on a table big enough for the planner's
//! choice to matter.
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use token_authority::storage::plans::{PlanInputs, QueryPlan};
use token_authority::storage::purge::PurgeCutoffs;

use crate::common::*;

const HOUR: i64 = 3_600_000;

/// `(n_tup_upd, n_tup_hot_upd)` of `sessions`, once the statistics show at
/// least `at_least` updates. Other backends' counters reach the shared
/// statistics asynchronously (when a backend goes idle, at most every few
/// seconds), so this polls, within a bound.
async fn update_counts(db: &DatabaseConnection, at_least: i64) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        db.execute_unprepared("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'sessions'",
            ))
            .await
            .unwrap()
            .expect("sessions has statistics");
        let counts = (
            row.try_get::<i64>("", "n_tup_upd").unwrap(),
            row.try_get::<i64>("", "n_tup_hot_upd").unwrap(),
        );
        if counts.0 >= at_least {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "statistics show {counts:?} updates, expected at least {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Refreshes each session `rounds` times; returns the new tokens.
async fn refresh_rounds(server: &TestServer, tokens: &mut [String], rounds: usize) {
    for _ in 0..rounds {
        // Every refresh then changes last_used_at and idle_expires_at (an
        // unchanged value in an indexed column would not stop HOT).
        server.clock.advance(Duration::from_secs(1));
        for token in tokens.iter_mut() {
            *token = server.refresh(token).await.unwrap().refresh_token;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refresh_is_a_hot_update() {
    let server = TestServer::start_with(Backend::Postgres, |c| {
        c.purge.enabled = false;
        c.limits.refresh_per_session = None;
    })
    .await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        tokens.push(
            server
                .issue("acme", &format!("user-{i}"))
                .await
                .refresh_token,
        );
    }
    let db = Database::connect(server.config.database.url.as_str())
        .await
        .unwrap();
    let (upd0, hot0) = update_counts(&db, 0).await;
    refresh_rounds(&server, &mut tokens, 25).await;
    let (upd, hot) = update_counts(&db, upd0 + 500).await;
    let (upd, hot) = (upd - upd0, hot - hot0);
    println!("HOT: {hot} of {upd} session updates");
    assert!(
        hot * 10 >= upd * 9,
        "only {hot} of {upd} refreshes were HOT updates"
    );

    // The check can fail: with an index on a column a refresh changes (as
    // before migration m20261202_000004), no refresh is HOT.
    db.execute_unprepared("CREATE INDEX idx_probe_idle ON sessions (idle_expires_at)")
        .await
        .unwrap();
    refresh_rounds(&server, &mut tokens, 5).await;
    let (upd2, hot2) = update_counts(&db, upd0 + upd + 100).await;
    let (upd2, hot2) = (upd2 - upd0 - upd, hot2 - hot0 - hot);
    println!("with an index on idle_expires_at, HOT: {hot2} of {upd2}");
    assert_eq!(hot2, 0, "{hot2} of {upd2} were HOT despite the index");
    db.close().await.unwrap();
}

/// A realistic table: four tenants of 100 subjects with 20 sessions each,
/// of which some are expired, idle or revoked, plus one subject at the cap
/// (50 live) with many revoked sessions, and audit events in proportion.
async fn fill(db: &DatabaseConnection, now: i64) -> String {
    let backend = db.get_database_backend();
    let bytes = |b: &str| match backend {
        DbBackend::Postgres => format!("'\\x{b}'::bytea"),
        _ => format!("X'{b}'"),
    };
    let mut rows = Vec::new();
    let mut seq = 0_i64;
    let mut push = |rows: &mut Vec<String>,
                    tenant: &str,
                    subject: &str,
                    i: usize,
                    state: usize|
     -> String {
        // state: 0 live, 1 expired, 2 idle, 3 revoked long ago, 4 revoked recently
        let created = now - 10 * HOUR;
        let (expires, idle) = match state {
            1 => (now - HOUR, now - HOUR),
            2 => (now + 10 * HOUR, now - HOUR),
            _ => (now + 10 * HOUR, now + HOUR),
        };
        let (revoked, seq_value) = match state {
            3 => {
                seq += 1;
                (format!("{}", now - 48 * HOUR), seq.to_string())
            }
            4 => {
                seq += 1;
                (format!("{}", now - HOUR / 2), seq.to_string())
            }
            _ => ("NULL".to_owned(), "NULL".to_owned()),
        };
        let id = uuid::Uuid::now_v7().to_string();
        rows.push(format!(
            "('{id}', '{tenant}', '{subject}', 'api', 'read', 0, {digest}, {created}, {last}, {expires}, {idle}, {revoked}, {seq_value}, 'dev-{i}', 'ua', '127.0.0.1')",
            digest = bytes("00"),
            last = created + i as i64,
        ));
        id
    };
    // The subject at the cap first, so that its sessions are among the
    // oldest ids (a page after one of them is no narrow id range).
    let first = push(&mut rows, "tenant-0", "at-cap", 0, 0);
    for i in 1..50 {
        push(&mut rows, "tenant-0", "at-cap", i, 0);
    }
    for i in 0..600 {
        push(&mut rows, "tenant-0", "at-cap", i, 3);
    }
    for t in 0..4 {
        for s in 0..100 {
            for i in 0..20 {
                // 1 in 20 of each state but live.
                let state = match (t * 7 + s * 3 + i) % 20 {
                    0 => 1,
                    1 => 2,
                    2 => 3,
                    3 => 4,
                    _ => 0,
                };
                push(
                    &mut rows,
                    &format!("tenant-{t}"),
                    &format!("user-{s}"),
                    i,
                    state,
                );
            }
        }
    }
    for chunk in rows.chunks(500) {
        db.execute_unprepared(&format!(
            "INSERT INTO sessions (id, tenant_id, subject, audience, scopes, generation, token_digest, \
             created_at, last_used_at, expires_at, idle_expires_at, revoked_at, revocation_seq, \
             device_name, user_agent, ip) VALUES {}",
            chunk.join(",")
        ))
        .await
        .unwrap();
    }
    // Audit events over the last 40 days, oldest first; 1 in 4 past a
    // 30-day retention.
    let events: Vec<String> = (0..20_000_i64)
        .map(|i| {
            format!(
                "({at}, 'refreshed', 'tenant-{t}', 'user-{s}', NULL, NULL)",
                at = now - 40 * 24 * HOUR + i * (40 * 24 * HOUR / 20_000),
                t = i % 4,
                s = i % 100,
            )
        })
        .collect();
    for chunk in events.chunks(1000) {
        db.execute_unprepared(&format!(
            "INSERT INTO audit_events (occurred_at, kind, tenant_id, subject, session_id, detail) VALUES {}",
            chunk.join(",")
        ))
        .await
        .unwrap();
    }
    first
}

/// Whether the plan reads all of `sessions` without an index.
fn scans_sessions(backend: Backend, plan: &str) -> bool {
    match backend {
        Backend::Sqlite => plan.lines().any(|line| {
            let line = line.trim();
            (line == "SCAN sessions" || line == "SCAN s") && !line.contains("USING")
        }),
        Backend::Postgres => plan.contains("Seq Scan on sessions"),
    }
}

fn check(backend: Backend, plans: &[QueryPlan], state: &str) {
    let pk = match backend {
        Backend::Sqlite => "sqlite_autoindex_sessions_1",
        Backend::Postgres => "sessions_pkey",
    };
    let expected = [
        ("issue_cap", "idx_sessions_live_of_subject"),
        ("list_sessions", "idx_sessions_live_of_subject"),
        ("revoke_subject", "idx_sessions_live_of_subject"),
        ("session_by_id", pk),
        ("revocations_by_cursor", "idx_sessions_revocation_seq_set"),
        ("revocations_since", "idx_sessions_revoked"),
        ("rotation_update", pk),
        ("purge_sessions_expired", "idx_sessions_expires_at"),
        ("purge_sessions_idle_window", pk),
        ("purge_sessions_idle", pk),
        ("purge_sessions_revoked", "idx_sessions_revoked"),
        ("purge_audit_events", "idx_audit_events_occurred_at"),
        ("audit_newest_page", "idx_audit_events_occurred_at"),
        ("audit_of_subject", "idx_audit_events_tenant_subject"),
    ];
    let mut failures = Vec::new();
    for (name, index) in expected {
        let Some(plan) = plans.iter().find(|p| p.name == name) else {
            failures.push(format!("{name}: not planned"));
            continue;
        };
        if !plan.plan.contains(index) || scans_sessions(backend, &plan.plan) {
            failures.push(format!(
                "{name} should use {index} and not scan sessions:\n{}\n{}",
                plan.sql, plan.plan
            ));
        }
    }
    // The detector itself: a statement no index serves is reported.
    let probe = plans.iter().find(|p| p.name == "full_scan_probe").unwrap();
    assert!(
        scans_sessions(backend, &probe.plan),
        "a full scan reads as: {}",
        probe.plan
    );
    assert!(
        failures.is_empty(),
        "{backend:?} ({state}):\n{}",
        failures.join("\n\n")
    );
}

async fn hot_queries_use_their_indexes(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.purge.enabled = false).await;
    let db = Database::connect(server.config.database.url.as_str())
        .await
        .unwrap();
    let now = wall_clock_now();
    // A session of the subject at the cap: the id the lookups, the page
    // cursor of ListSessions and the idle sweep's resume point use.
    let subject_session = fill(&db, now).await;
    db.close().await.unwrap();
    let inputs = PlanInputs {
        tenant_id: "tenant-0".into(),
        subject: "at-cap".into(),
        session_id: subject_session,
        now,
        cutoffs: PurgeCutoffs {
            now,
            revoked_before: now - 24 * HOUR,
            audit_before: now - 30 * 24 * HOUR,
            key_retired_before: now - HOUR,
        },
        purge_batch: 200,
        revocation_cursor: 1_000,
    };
    if backend == Backend::Sqlite {
        // As production runs it: SQLite without statistics.
        let plans = server.store.query_plans(&inputs).await.unwrap();
        check(backend, &plans, "no statistics");
    }
    server.store.analyze().await.unwrap();
    let plans = server.store.query_plans(&inputs).await.unwrap();
    for plan in &plans {
        println!(
            "{}: {}\n  {}",
            plan.name,
            plan.sql,
            plan.plan.replace('\n', "\n  ")
        );
    }
    check(backend, &plans, "analyzed");
}

fn wall_clock_now() -> i64 {
    use token_authority::verify::clock::{Clock, SystemClock};
    SystemClock.now_millis()
}

crate::on_both_backends!(hot_queries_use_their_indexes);
