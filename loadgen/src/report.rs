//! Every baseline and target in one run, so results are ratios measured on
//! the same machine at the same moment.
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::{self, Budget, Stats};
use crate::raw::Raw;
use crate::server::{BoxError, Target};
use token_authority::verify::access_token::{self, AccessClaims};
use token_authority::verify::clock::{Clock, SystemClock};
use token_authority::verify::keys::{ephemeral, KeyAlgorithm};

const VALIDATE_STREAMS: usize = 64;
const REFRESH_SESSIONS: usize = 32;
/// Sessions issued before measuring storage, so that per-session sizes are
/// not dominated by the first pages of empty tables and indexes.
const GROWTH_SESSIONS: u64 = 2000;

#[derive(Debug, Serialize)]
pub struct Report {
    pub cores: usize,
    pub validate: ValidateReport,
    pub databases: Vec<DatabaseReport>,
}

#[derive(Debug, Serialize)]
pub struct ValidateReport {
    pub health: Stats,
    pub validate: Stats,
    pub validate_1000_tokens: Stats,
    pub mixed: Stats,
    /// Validate req/s ÷ health req/s (target ≥ 0.7).
    pub validate_vs_health: f64,
    /// JWT verifications per second on one core, outside the server.
    pub jwt_verify_per_core: f64,
    /// Validate req/s per core ÷ JWT verify per core.
    pub validate_per_core_vs_verify: f64,
}

#[derive(Debug, Serialize)]
pub struct DatabaseReport {
    pub backend: String,
    pub issue: Stats,
    pub raw_update: Stats,
    pub refresh: Stats,
    /// Refresh req/s ÷ raw UPDATE + audit INSERT per second, one commit
    /// each, sent with sqlx (`raw`), not through our store (target ≥ 0.5).
    pub refresh_vs_raw_update: f64,
    pub sessions_before: u64,
    pub sessions_after: u64,
    pub refreshes: u64,
    pub session_table_bytes: Option<u64>,
    pub table_bytes_per_session: Option<f64>,
    pub database_bytes: Option<u64>,
    pub database_bytes_per_session: Option<f64>,
}

pub async fn run(budget: Budget, database_url: Option<&str>) -> Result<Report, BoxError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seconds = match budget {
        Budget::For(d) => d,
        Budget::Requests(_) => Duration::from_secs(5),
    };
    let target = Target::start(None, database_url).await?;
    let health = load::run("health", budget, target.health_steps(VALIDATE_STREAMS)).await;
    let validate = load::run(
        "validate",
        budget,
        target.validate_steps(VALIDATE_STREAMS, 1).await?,
    )
    .await;
    let fresh_steps = target.validate_steps(VALIDATE_STREAMS, 1000).await?;
    let validate_1000_tokens = load::run("validate (1000 tokens)", budget, fresh_steps).await;
    let mixed = load::run(
        "mixed 90/9/1",
        budget,
        target.mixed_steps(VALIDATE_STREAMS).await?,
    )
    .await;
    let jwt_verify_per_core =
        tokio::task::spawn_blocking(move || verify_per_core(seconds)).await??;
    let validate_report = ValidateReport {
        validate_vs_health: validate.per_second / health.per_second,
        validate_per_core_vs_verify: validate.per_second / cores as f64 / jwt_verify_per_core,
        jwt_verify_per_core,
        health,
        validate,
        validate_1000_tokens,
        mixed,
    };
    let mut databases = vec![database_report(&target, budget).await?];
    target.stop().await;
    if database_url.is_none() {
        if let Ok(admin) = std::env::var("TA_TEST_POSTGRES_URL") {
            let url = fresh_postgres_database(&admin).await?;
            let target = Target::start(None, Some(&url)).await?;
            databases.push(database_report(&target, budget).await?);
            target.stop().await;
        }
    }
    let report = Report {
        cores,
        validate: validate_report,
        databases,
    };
    print(&report);
    Ok(report)
}

async fn database_report(target: &Target, budget: Budget) -> Result<DatabaseReport, BoxError> {
    let store = target
        .store
        .as_ref()
        .ok_or("needs an in-process server")?
        .clone();
    let backend = format!("{:?}", store.backend()).to_lowercase();
    let issue = load::run(
        &format!("issue ({backend})"),
        Budget::Requests(GROWTH_SESSIONS),
        target.issue_steps(REFRESH_SESSIONS),
    )
    .await;
    let url = target
        .database_url
        .as_deref()
        .ok_or("needs an in-process server")?;
    let raw_steps = Raw::new(url)
        .refresh_steps(&[target.client()], REFRESH_SESSIONS, "report")
        .await?;
    let raw_update = load::run(
        &format!("raw UPDATE + audit INSERT ({backend})"),
        budget,
        raw_steps,
    )
    .await;
    let steps = target.refresh_steps(REFRESH_SESSIONS).await?;
    let sessions_before = store.session_rows().await?;
    let refresh = load::run(&format!("refresh ({backend})"), budget, steps).await;
    let sessions_after = store.session_rows().await?;
    let session_table_bytes = store.sessions_table_bytes().await?;
    let database_bytes = store.database_bytes().await?;
    let per_session = |bytes: Option<u64>| bytes.map(|b| b as f64 / sessions_after.max(1) as f64);
    Ok(DatabaseReport {
        backend,
        refresh_vs_raw_update: refresh.per_second / raw_update.per_second,
        refreshes: refresh.requests,
        table_bytes_per_session: per_session(session_table_bytes),
        database_bytes_per_session: per_session(database_bytes),
        database_bytes,
        issue,
        raw_update,
        refresh,
        sessions_before,
        sessions_after,
        session_table_bytes,
    })
}

/// JWT (EdDSA) verifications per second on one thread: the crypto floor of Validate.
fn verify_per_core(seconds: Duration) -> Result<f64, BoxError> {
    let now = SystemClock.now_millis();
    let (signer, verifying) = ephemeral(KeyAlgorithm::EdDsa)?;
    let claims = AccessClaims {
        iss: "token-authority".into(),
        sub: "alice".into(),
        aud: "api".into(),
        exp: now / 1000 + 900,
        iat: now / 1000,
        nbf: now / 1000,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        sid: uuid::Uuid::now_v7().to_string(),
        tenant: "load".into(),
        scope: "read write".into(),
        client_id: "loadgen".into(),
        act: None,
        cnf: None,
        extra: Default::default(),
    };
    let token = access_token::sign(&signer, &claims)?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < seconds {
        for _ in 0..100 {
            access_token::verify(&verifying, "token-authority", &token, now, 0)?;
        }
        n += 100;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn fresh_postgres_database(admin: &str) -> Result<String, BoxError> {
    use sea_orm::ConnectionTrait;
    let name = format!("ta_loadgen_{}", uuid::Uuid::new_v4().simple());
    let db = sea_orm::Database::connect(admin).await?;
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    db.close().await?;
    let (base, _) = admin
        .rsplit_once('/')
        .ok_or("postgres URL ends with /database")?;
    Ok(format!("{base}/{name}"))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn print(r: &Report) {
    let v = &r.validate;
    println!("## Throughput and latency ({} cores)\n", r.cores);
    let mut rows = vec![
        v.health.clone(),
        v.validate.clone(),
        v.validate_1000_tokens.clone(),
        v.mixed.clone(),
    ];
    for d in &r.databases {
        rows.push(d.issue.clone());
        rows.push(d.raw_update.clone());
        rows.push(d.refresh.clone());
    }
    load::print_table(&rows);
    println!("\n## Ratios and targets\n");
    println!("| measure | value | target | |");
    println!("|---|---:|---:|---|");
    println!(
        "| Validate ÷ health throughput ({VALIDATE_STREAMS} streams) | {:.2} | ≥ 0.70 | {} |",
        v.validate_vs_health,
        verdict(v.validate_vs_health >= 0.7)
    );
    println!(
        "| Validate p99 ({VALIDATE_STREAMS} streams) | {:.2} ms | < 2 ms | {} |",
        v.validate.p99_ms,
        verdict(v.validate.p99_ms < 2.0)
    );
    println!(
        "| JWT verify, one core | {:.0}/s | | |",
        v.jwt_verify_per_core
    );
    println!(
        "| Validate per core ÷ JWT verify per core | {:.2} | | |",
        v.validate_per_core_vs_verify
    );
    for d in &r.databases {
        println!(
            "| Refresh ÷ raw UPDATE + audit ({}) | {:.2} | ≥ 0.50 | {} |",
            d.backend,
            d.refresh_vs_raw_update,
            verdict(d.refresh_vs_raw_update >= 0.5)
        );
        println!(
            "| Refresh p99 ({REFRESH_SESSIONS} sessions, {}) | {:.2} ms | < 5 ms | {} |",
            d.backend,
            d.refresh.p99_ms,
            verdict(d.refresh.p99_ms < 5.0)
        );
        let added = d.sessions_after as i64 - d.sessions_before as i64;
        println!(
            "| Rows added by {} refreshes ({}) | {} | 0 | {} |",
            d.refreshes,
            d.backend,
            added,
            verdict(added == 0)
        );
        if let Some(b) = d.table_bytes_per_session {
            println!(
                "| Session table + index bytes per session ({}, {} rows) | {:.0} | | |",
                d.backend, d.sessions_after, b
            );
        }
        if let Some(b) = d.database_bytes_per_session {
            println!(
                "| Database bytes per session, audit included ({}, {} rows) | {:.0} | | |",
                d.backend, d.sessions_after, b
            );
        }
    }
}
