//! Load driver for token-authority.
//!
//!   cargo run --release -p loadgen -- validate --concurrency 64 --seconds 10
//!   cargo run --release -p loadgen -- --target http://127.0.0.1:50051 refresh
//!   cargo run --release -p loadgen -- report --json target/bench-report.json
//!   target/release/loadgen sweep --seconds 3 --json target/bench/sweep.json
//!
//! Without `--target`, it starts the server in-process on a fresh SQLite
//! database (or `--database-url`), on a loopback port.
mod cache_report;
mod churn;
mod load;
mod process;
mod raw;
mod report;
mod server;
mod steps;
mod sweep;

use std::time::Duration;

use clap::{Parser, Subcommand};

use load::{Budget, Stats};
use server::Target;

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Load driver for token-authority")]
struct Cli {
    /// Address of a running server; default: start one in-process.
    #[arg(long, global = true)]
    target: Option<String>,
    /// Database of the in-process server (default: a fresh SQLite file).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Concurrent streams.
    #[arg(long, short, global = true, default_value_t = 32)]
    concurrency: usize,
    /// Run for this many seconds…
    #[arg(long, global = true, default_value_t = 5.0)]
    seconds: f64,
    /// …or for exactly this many requests.
    #[arg(long, global = true)]
    requests: Option<u64>,
    /// Also write the results as JSON here.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// grpc.health.v1 Check: the cheapest unary RPC (gRPC floor).
    Health,
    /// Validate of the same token every time.
    Validate,
    /// Validate of 1000 different tokens in turn.
    ValidateFresh,
    /// Each stream refreshes its own session with the token it got last.
    Refresh,
    /// Issue a new session per request.
    Issue,
    /// 90% Validate, 9% Refresh, 1% Issue.
    Mixed,
    /// Every baseline and target in one run (in-process servers only).
    Report,
    /// Health vs Validate with cache hits vs misses on one in-process server.
    ValidateCache,
    /// One subject logging in (and out) over and over: rows, revoked set,
    /// RSS and Issue latency (in-process server only).
    Churn {
        /// Issues per loop.
        #[arg(long, default_value_t = 20_000)]
        issues: u64,
    },
    /// Refresh and Issue curves against the server binary in its own
    /// process, next to the databases' raw limits, on SQLite and (with
    /// TA_TEST_POSTGRES_URL) PostgreSQL, plus replicas; CPU per request and
    /// pg_stat_statements. `--seconds` is per point.
    Sweep {
        /// Concurrencies of the curves.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256")]
        levels: Vec<usize>,
        /// Server processes over one PostgreSQL database.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        replicas: Vec<usize>,
        /// Streams of the replica points.
        #[arg(long, default_value_t = 64)]
        replica_streams: usize,
        /// Streams of the pg_stat_statements refresh run.
        #[arg(long, default_value_t = 64)]
        stats_streams: usize,
        /// The server binary (default: token-authority next to loadgen).
        #[arg(long)]
        server_bin: Option<std::path::PathBuf>,
        /// SQLite only, even with TA_TEST_POSTGRES_URL set.
        #[arg(long)]
        sqlite_only: bool,
    },
}

#[tokio::main]
async fn main() -> Result<(), server::BoxError> {
    let cli = Cli::parse();
    let budget = match cli.requests {
        Some(n) => Budget::Requests(n),
        None => Budget::For(Duration::from_secs_f64(cli.seconds)),
    };
    if let Workload::ValidateCache = cli.workload {
        let report = cache_report::run(budget).await?;
        if let Some(path) = &cli.json {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    if let Workload::Churn { issues } = cli.workload {
        let report = churn::run(cli.database_url.as_deref(), cli.concurrency, issues).await?;
        if let Some(path) = &cli.json {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    if let Workload::Sweep {
        levels,
        replicas,
        replica_streams,
        stats_streams,
        server_bin,
        sqlite_only,
    } = &cli.workload
    {
        let report = sweep::run(sweep::Options {
            concurrencies: levels.clone(),
            replicas: replicas.clone(),
            replica_concurrency: *replica_streams,
            stats_concurrency: *stats_streams,
            seconds: cli.seconds,
            server_binary: server_bin.clone(),
            sqlite_only: *sqlite_only,
        })
        .await?;
        if let Some(path) = &cli.json {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    if let Workload::Report = cli.workload {
        let report = report::run(budget, cli.database_url.as_deref()).await?;
        if let Some(path) = &cli.json {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    let target = Target::start(cli.target.as_deref(), cli.database_url.as_deref()).await?;
    let stats = run_workload(&target, &cli.workload, cli.concurrency, budget).await?;
    load::print_table(std::slice::from_ref(&stats));
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&stats)?)?;
    }
    target.stop().await;
    Ok(())
}

async fn run_workload(
    target: &Target,
    workload: &Workload,
    concurrency: usize,
    budget: Budget,
) -> Result<Stats, server::BoxError> {
    Ok(match workload {
        Workload::Health => load::run("health", budget, target.health_steps(concurrency)).await,
        Workload::Validate => {
            load::run(
                "validate",
                budget,
                target.validate_steps(concurrency, 1).await?,
            )
            .await
        }
        Workload::ValidateFresh => {
            let steps = target.validate_steps(concurrency, 1000).await?;
            load::run("validate (1000 tokens)", budget, steps).await
        }
        Workload::Refresh => {
            load::run("refresh", budget, target.refresh_steps(concurrency).await?).await
        }
        Workload::Issue => load::run("issue", budget, target.issue_steps(concurrency)).await,
        Workload::Mixed => load::run("mixed", budget, target.mixed_steps(concurrency).await?).await,
        Workload::Report
        | Workload::ValidateCache
        | Workload::Churn { .. }
        | Workload::Sweep { .. } => {
            unreachable!("handled in main")
        }
    })
}
