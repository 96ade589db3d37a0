//! Curves in one run: Refresh and Issue at several concurrencies on SQLite
//! and PostgreSQL, against the real server binary in its own process, next
//! to the databases' raw limits (`raw`) at the same concurrencies; then
//! replicas over one PostgreSQL database; server, PostgreSQL and driver CPU
//! per request; pg_stat_statements after a refresh run.
use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{self, Connection, Row};
use serde::Serialize;

use crate::load::{self, Budget, Stats, Step};
use crate::process::{self, CpuPerOp, Probe, ServerProcess};
use crate::raw::Raw;
use crate::server::BoxError;
use crate::steps::{self, Client};
use token_authority::proto::token_authority_client::TokenAuthorityClient;

pub struct Options {
    pub concurrencies: Vec<usize>,
    pub replicas: Vec<usize>,
    pub replica_concurrency: usize,
    pub stats_concurrency: usize,
    pub seconds: f64,
    pub server_binary: Option<PathBuf>,
    /// Skip PostgreSQL even if TA_TEST_POSTGRES_URL is set.
    pub sqlite_only: bool,
}

#[derive(Debug, Serialize)]
pub struct Sweep {
    pub cores: usize,
    pub seconds_per_point: f64,
    pub clock_ticks_per_second: u64,
    pub durability: Durability,
    pub points: Vec<Point>,
    pub ratios: Vec<Ratio>,
    pub postgres_statements: Option<StatementReport>,
}

#[derive(Debug, Default, Serialize)]
pub struct Durability {
    /// The server's `database.sqlite_synchronous` (set explicitly).
    pub server_sqlite_synchronous: String,
    /// `PRAGMA synchronous` on the raw SQLite connection (2 = FULL).
    pub raw_sqlite_synchronous: Option<i64>,
    /// `SHOW` of the PostgreSQL cluster: fsync, synchronous_commit,
    /// full_page_writes, shared_preload_libraries.
    pub postgres: Vec<(String, String)>,
    /// fsync, synchronous_commit and full_page_writes all on.
    pub postgres_durable: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// `sweep` (concurrency curves), `stats` (pg_stat_statements run) or
    /// `replicas`.
    pub phase: String,
    pub backend: String,
    /// `ours` (the server binary) or `raw` (sqlx, no server).
    pub series: String,
    pub workload: String,
    pub concurrency: usize,
    pub replicas: usize,
    pub stats: Stats,
    pub cpu_us_per_op: CpuPerOp,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    pub backend: String,
    pub workload: String,
    pub concurrency: usize,
    pub ours_per_second: f64,
    pub raw_per_second: f64,
    /// ours ÷ raw throughput, same run.
    pub ours_vs_raw: f64,
    pub ours_p50_ms: f64,
    pub ours_p99_ms: f64,
    pub raw_p99_ms: f64,
    pub server_cpu_us_per_op: Option<f64>,
    pub postgres_cpu_us_per_op_ours: Option<f64>,
    pub postgres_cpu_us_per_op_raw: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StatementReport {
    pub concurrency: usize,
    pub refreshes: u64,
    /// pg_stat_statements of the benchmark database, top 10 by calls.
    pub top_by_calls: Vec<Statement>,
    pub distinct_statements: u64,
    pub total_calls: u64,
    /// Δ pg_stat_user_tables for `sessions` over the refresh run.
    pub sessions_n_tup_upd: i64,
    pub sessions_n_tup_hot_upd: i64,
}

#[derive(Debug, Serialize)]
pub struct Statement {
    pub calls: i64,
    pub calls_per_refresh: f64,
    pub mean_ms: f64,
    pub query: String,
}

struct Ctx {
    budget: Budget,
    /// PostgreSQL database to ANALYZE before each point (see `analyze`).
    analyze_url: Option<String>,
    ticks: u64,
    postmaster: Option<u32>,
    phase: &'static str,
    points: Vec<Point>,
}

impl Ctx {
    async fn measure<S: Step>(
        &mut self,
        key: (&str, &str, &str, usize, usize),
        servers: &[&ServerProcess],
        steps: Vec<S>,
    ) {
        let (backend, series, workload, concurrency, replicas) = key;
        let probe = Probe {
            servers: servers.iter().map(|s| s.pid()).collect(),
            postmaster: (backend == "postgres").then_some(self.postmaster).flatten(),
        };
        let name = format!("{workload} {series} ({backend}, {replicas} server(s))");
        if let Some(url) = self
            .analyze_url
            .as_deref()
            .filter(|_| backend == "postgres")
        {
            analyze(url).await;
        }
        let before = probe.snapshot();
        let stats = load::run(&name, self.budget, steps).await;
        let after = probe.snapshot();
        let cpu = before.per_op(&after, stats.requests, self.ticks);
        load::print_table(std::slice::from_ref(&stats));
        println!(
            "  CPU µs/op: server {} | postgres {} | driver {}",
            fmt_opt(cpu.server_us),
            fmt_opt(cpu.postgres_us),
            fmt_opt(cpu.driver_us)
        );
        self.points.push(Point {
            phase: self.phase.to_owned(),
            backend: backend.to_owned(),
            series: series.to_owned(),
            workload: workload.to_owned(),
            concurrency,
            replicas,
            stats,
            cpu_us_per_op: cpu,
        });
    }
}

/// Statistics as autovacuum would have them in a database that grew over
/// minutes, not within the seconds of a sweep: every point issues its own
/// sessions, and plans made for a table a tenth of its size (autovacuum
/// analyzes at most once a minute) would measure a young database instead
/// of a steady state. A failure is reported and the point runs anyway.
async fn analyze(url: &str) {
    let result = async {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::raw_sql("ANALYZE").execute(&mut conn).await?;
        conn.close().await
    }
    .await;
    if let Err(e) = result {
        eprintln!("ANALYZE before the point failed: {e}");
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn clients(servers: &[&ServerProcess]) -> Vec<Client> {
    servers
        .iter()
        .map(|s| TokenAuthorityClient::new(s.channel.clone()))
        .collect()
}

/// One Refresh stream per session, sessions issued (and streams spread)
/// round-robin over `clients`.
async fn refresh_steps(
    clients: &[Client],
    n: usize,
    tag: &str,
) -> Result<Vec<steps::Refresh>, BoxError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = clients[i % clients.len()].clone();
        let pair = steps::issue(&mut client, format!("sweep-{tag}-{i}")).await?;
        out.push(steps::Refresh {
            client,
            token: pair.refresh_token,
        });
    }
    Ok(out)
}

fn issue_steps(clients: &[Client], n: usize, tag: &str) -> Vec<steps::Issue> {
    (0..n)
        .map(|worker| steps::Issue {
            client: clients[worker % clients.len()].clone(),
            worker,
            // Subjects unique per point: no session cap is reached.
            n: tag_base(tag),
        })
        .collect()
}

/// Subject numbers of different points never collide.
fn tag_base(tag: &str) -> u64 {
    tag.bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64))
        % 1_000_000
        * 1_000_000
}

/// Every concurrency point, ours and raw interleaved, on one server.
async fn backend_points(
    ctx: &mut Ctx,
    backend: &str,
    url: &str,
    server: &ServerProcess,
    concurrencies: &[usize],
) -> Result<(), BoxError> {
    let raw = Raw::new(url);
    let cs = clients(&[server]);
    for &c in concurrencies {
        let tag = format!("{backend}-c{c}");
        let steps = refresh_steps(&cs, c, &tag).await?;
        ctx.measure((backend, "ours", "refresh", c, 1), &[server], steps)
            .await;
        let steps = raw.refresh_steps(&cs, c, &tag).await?;
        ctx.measure((backend, "raw", "refresh", c, 1), &[server], steps)
            .await;
        ctx.measure(
            (backend, "ours", "issue", c, 1),
            &[server],
            issue_steps(&cs, c, &tag),
        )
        .await;
        let steps = raw.issue_steps(c, &tag).await?;
        ctx.measure((backend, "raw", "issue", c, 1), &[server], steps)
            .await;
    }
    Ok(())
}

pub async fn run(options: Options) -> Result<Sweep, BoxError> {
    let binary = match &options.server_binary {
        Some(b) => b.clone(),
        None => process::default_binary()?,
    };
    if !binary.exists() {
        return Err(format!(
            "{} not found: build it (cargo build --release --bin token-authority)",
            binary.display()
        )
        .into());
    }
    let dir = tempfile::tempdir()?;
    let mut ctx = Ctx {
        budget: Budget::For(Duration::from_secs_f64(options.seconds)),
        ticks: process::clock_ticks(),
        postmaster: std::env::var("TA_TEST_POSTGRES_PID")
            .ok()
            .and_then(|p| p.trim().parse().ok()),
        analyze_url: None,
        phase: "sweep",
        points: Vec::new(),
    };
    let mut durability = Durability {
        server_sqlite_synchronous: "full".into(),
        ..Default::default()
    };

    println!(
        "# SQLite ({}), server {}\n",
        dir.path().display(),
        binary.display()
    );
    let sqlite_url = format!("sqlite://{}/sweep.db", dir.path().display());
    let server = ServerProcess::start(&binary, &sqlite_url, dir.path(), "sqlite").await?;
    durability.raw_sqlite_synchronous = Raw::new(&sqlite_url).sqlite_synchronous().await?;
    backend_points(
        &mut ctx,
        "sqlite",
        &sqlite_url,
        &server,
        &options.concurrencies,
    )
    .await?;
    server.stop().await;

    let mut postgres_statements = None;
    let admin = std::env::var("TA_TEST_POSTGRES_URL").ok();
    if let (Some(admin), false) = (admin, options.sqlite_only) {
        let url = fresh_postgres_database(&admin).await?;
        ctx.analyze_url = Some(url.clone());
        let (settings, durable) = postgres_settings(&url).await?;
        durability.postgres = settings;
        durability.postgres_durable = Some(durable);
        if !durable {
            eprintln!("WARNING: PostgreSQL runs without production durability (TA_PG_DURABLE=1)");
        }
        if ctx.postmaster.is_none() {
            eprintln!("note: TA_TEST_POSTGRES_PID not set: no PostgreSQL CPU figures");
        }
        println!("\n# PostgreSQL\n");
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir_all(&pg_dir)?;
        let server = ServerProcess::start(&binary, &url, &pg_dir, "pg-0").await?;
        backend_points(&mut ctx, "postgres", &url, &server, &options.concurrencies).await?;
        server.stop().await;

        println!("\n# pg_stat_statements over one refresh run\n");
        ctx.phase = "stats";
        postgres_statements = statement_report(&mut ctx, &binary, &url, &pg_dir, &options)
            .await
            .map_err(|e| eprintln!("pg_stat_statements report skipped: {e}"))
            .ok();

        println!("\n# Replicas over one PostgreSQL database\n");
        ctx.phase = "replicas";
        for &r in &options.replicas {
            replica_points(
                &mut ctx,
                &binary,
                &url,
                &pg_dir,
                r,
                options.replica_concurrency,
            )
            .await?;
        }
    } else {
        eprintln!("no TA_TEST_POSTGRES_URL: SQLite only");
    }

    let ratios = ratios(&ctx.points);
    let sweep = Sweep {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seconds_per_point: options.seconds,
        clock_ticks_per_second: ctx.ticks,
        durability,
        points: ctx.points,
        ratios,
        postgres_statements,
    };
    print(&sweep);
    Ok(sweep)
}

async fn replica_points(
    ctx: &mut Ctx,
    binary: &Path,
    url: &str,
    dir: &Path,
    replicas: usize,
    concurrency: usize,
) -> Result<(), BoxError> {
    let mut servers = Vec::with_capacity(replicas);
    for i in 0..replicas {
        servers.push(ServerProcess::start(binary, url, dir, &format!("pg-r{replicas}-{i}")).await?);
    }
    let refs: Vec<&ServerProcess> = servers.iter().collect();
    let cs = clients(&refs);
    let tag = format!("replicas{replicas}");
    let steps = refresh_steps(&cs, concurrency, &tag).await?;
    ctx.measure(
        ("postgres", "ours", "refresh", concurrency, replicas),
        &refs,
        steps,
    )
    .await;
    ctx.measure(
        ("postgres", "ours", "issue", concurrency, replicas),
        &refs,
        issue_steps(&cs, concurrency, &tag),
    )
    .await;
    for server in servers {
        server.stop().await;
    }
    Ok(())
}

async fn fresh_postgres_database(admin: &str) -> Result<String, BoxError> {
    let name = format!("ta_sweep_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, _) = admin
        .rsplit_once('/')
        .ok_or("postgres URL ends with /database")?;
    Ok(format!("{base}/{name}"))
}

async fn postgres_settings(url: &str) -> Result<(Vec<(String, String)>, bool), BoxError> {
    let mut conn = PgConnection::connect(url).await?;
    let mut out = Vec::new();
    for name in [
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_preload_libraries",
    ] {
        let row = sqlx::query("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        out.push((name.to_owned(), row.try_get::<String, _>(0)?));
    }
    conn.close().await?;
    let durable = out.iter().take(3).all(|(_, v)| v == "on");
    Ok((out, durable))
}

async fn sessions_updates(conn: &mut PgConnection) -> Result<(i64, i64), BoxError> {
    let row = sqlx::query(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'sessions'",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// A fresh server, sessions issued, statistics reset, one refresh run, the
/// server stopped (its backends flush their statistics as they exit), then
/// pg_stat_statements and the HOT counts of `sessions`.
async fn statement_report(
    ctx: &mut Ctx,
    binary: &Path,
    url: &str,
    dir: &Path,
    options: &Options,
) -> Result<StatementReport, BoxError> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await?;
    let server = ServerProcess::start(binary, url, dir, "pg-stats").await?;
    let c = options.stats_concurrency;
    let steps = refresh_steps(&clients(&[&server]), c, "stats").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::raw_sql("SELECT pg_stat_statements_reset()")
        .execute(&mut conn)
        .await?;
    let (upd0, hot0) = sessions_updates(&mut conn).await?;
    ctx.measure(("postgres", "ours", "refresh", c, 1), &[&server], steps)
        .await;
    let refreshes = ctx.points.last().map_or(0, |p| p.stats.requests);
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (upd1, hot1) = sessions_updates(&mut conn).await?;
    let filter = "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                  WHERE d.datname = current_database() AND s.query NOT LIKE '%pg_stat%'";
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT s.calls, s.mean_exec_time, s.query {filter} ORDER BY s.calls DESC LIMIT 10"
    )))
    .fetch_all(&mut conn)
    .await?;
    let totals = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(sum(s.calls), 0)::BIGINT {filter}"
    )))
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    let mut top = Vec::new();
    for row in rows {
        let calls: i64 = row.try_get(0)?;
        top.push(Statement {
            calls,
            calls_per_refresh: calls as f64 / refreshes.max(1) as f64,
            mean_ms: row.try_get(1)?,
            query: row.try_get(2)?,
        });
    }
    Ok(StatementReport {
        concurrency: c,
        refreshes,
        top_by_calls: top,
        distinct_statements: totals.try_get::<i64, _>(0)? as u64,
        total_calls: totals.try_get::<i64, _>(1)? as u64,
        sessions_n_tup_upd: upd1 - upd0,
        sessions_n_tup_hot_upd: hot1 - hot0,
    })
}

fn ratios(points: &[Point]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let sweep = points.iter().filter(|p| p.phase == "sweep");
    for ours in sweep.clone().filter(|p| p.series == "ours") {
        let Some(raw) = sweep.clone().find(|p| {
            p.series == "raw"
                && p.backend == ours.backend
                && p.workload == ours.workload
                && p.concurrency == ours.concurrency
        }) else {
            continue;
        };
        out.push(Ratio {
            backend: ours.backend.clone(),
            workload: ours.workload.clone(),
            concurrency: ours.concurrency,
            ours_per_second: ours.stats.per_second,
            raw_per_second: raw.stats.per_second,
            ours_vs_raw: ours.stats.per_second / raw.stats.per_second.max(f64::MIN_POSITIVE),
            ours_p50_ms: ours.stats.p50_ms,
            ours_p99_ms: ours.stats.p99_ms,
            raw_p99_ms: raw.stats.p99_ms,
            server_cpu_us_per_op: ours.cpu_us_per_op.server_us,
            postgres_cpu_us_per_op_ours: ours.cpu_us_per_op.postgres_us,
            postgres_cpu_us_per_op_raw: raw.cpu_us_per_op.postgres_us,
        });
    }
    out
}

fn print(s: &Sweep) {
    println!("\n## Durability\n");
    println!(
        "SQLite: server synchronous={}, raw connection PRAGMA synchronous={}",
        s.durability.server_sqlite_synchronous,
        s.durability
            .raw_sqlite_synchronous
            .map_or("-".into(), |v| v.to_string())
    );
    if !s.durability.postgres.is_empty() {
        let settings: Vec<String> = s
            .durability
            .postgres
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("PostgreSQL: {}", settings.join(", "));
    }
    println!(
        "\n## Ours ÷ raw, same run ({} s per point)\n",
        s.seconds_per_point
    );
    println!("| backend | workload | conc. | ours/s | raw/s | ours ÷ raw | ours p50 ms | ours p99 ms | raw p99 ms | server CPU µs/op | PG CPU µs/op ours | PG CPU µs/op raw |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &s.ratios {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.backend,
            r.workload,
            r.concurrency,
            r.ours_per_second,
            r.raw_per_second,
            r.ours_vs_raw,
            r.ours_p50_ms,
            r.ours_p99_ms,
            r.raw_p99_ms,
            fmt_opt(r.server_cpu_us_per_op),
            fmt_opt(r.postgres_cpu_us_per_op_ours),
            fmt_opt(r.postgres_cpu_us_per_op_raw),
        );
    }
    if s.points.iter().any(|p| p.phase == "replicas") {
        println!("\n## Replicas (PostgreSQL)\n");
        println!("| workload | replicas | conc. | req/s | p50 ms | p99 ms | server CPU µs/op (all) | PG CPU µs/op |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for p in s.points.iter().filter(|p| p.phase == "replicas") {
            println!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |",
                p.workload,
                p.replicas,
                p.concurrency,
                p.stats.per_second,
                p.stats.p50_ms,
                p.stats.p99_ms,
                fmt_opt(p.cpu_us_per_op.server_us),
                fmt_opt(p.cpu_us_per_op.postgres_us),
            );
        }
    }
    if let Some(st) = &s.postgres_statements {
        println!(
            "\n## pg_stat_statements, {} refreshes at {} streams: {} distinct statements, {} calls ({:.2} per refresh)\n",
            st.refreshes,
            st.concurrency,
            st.distinct_statements,
            st.total_calls,
            st.total_calls as f64 / st.refreshes.max(1) as f64
        );
        println!("| calls | per refresh | mean ms | statement |");
        println!("|---:|---:|---:|---|");
        for q in &st.top_by_calls {
            let text: String = q.query.split_whitespace().collect::<Vec<_>>().join(" ");
            let short: String = text.chars().take(140).collect();
            println!(
                "| {} | {:.2} | {:.3} | `{}` |",
                q.calls, q.calls_per_refresh, q.mean_ms, short
            );
        }
        println!(
            "\nsessions: n_tup_upd {} , n_tup_hot_upd {} (HOT {:.1}%)",
            st.sessions_n_tup_upd,
            st.sessions_n_tup_hot_upd,
            100.0 * st.sessions_n_tup_hot_upd as f64 / st.sessions_n_tup_upd.max(1) as f64
        );
    }
}
