//! The `token-authority` command line.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::App;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::storage::Store;
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(name = "token-authority", version, about = "gRPC token authority")]
pub struct Cli {
    /// TOML configuration file (settings not in it come from defaults and
    /// TOKEN_AUTHORITY_* environment variables).
    #[arg(long, short, global = true, env = "TOKEN_AUTHORITY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL, overriding the configuration: sqlite://file.db or postgres://…
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (migrates the database first).
    Serve {
        /// Listen address, overriding the configuration (default 127.0.0.1:50051).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Delete expired and revoked state (what `serve` does every purge.interval).
    Purge {
        /// Run one purge, print what it deleted, and exit.
        #[arg(long)]
        once: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.database_url {
        config.database.url = url;
    }
    telemetry::init_logging(&config.log);
    match cli.command {
        Command::Migrate => {
            let store = Store::connect(&config.database)
                .await
                .context("connecting to the database")?;
            store.migrate().await.context("migrating")?;
            tracing::info!("database is up to date");
            store.close().await?;
            Ok(())
        }
        Command::Purge { once } => purge(config, once).await,
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let listen = config.listen;
            let app = build_with_retry(config).await?;
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(address = %listener.local_addr()?, "serving gRPC");
            app.serve(listener, shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(())
        }
    }
}

async fn purge(config: Config, once: bool) -> anyhow::Result<()> {
    let app = App::build(config.clone(), Arc::new(SystemClock)).await?;
    if !once {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let purger = app.purger.clone();
        let every = config.purge.interval;
        let task = tokio::spawn(async move { purger.run(every, stopped).await });
        shutdown_signal().await;
        let _ = stop.send(true);
        let _ = task.await;
        app.shutdown().await;
        return Ok(());
    }
    let report = app.purger.purge_once().await.context("purging")?;
    if report.skipped {
        println!("skipped: another replica holds the purge lock");
    } else {
        println!("{:<14} {:<10} {:>10}", "table", "reason", "deleted");
        for (kind, rows) in &report.deleted {
            println!("{:<14} {:<10} {:>10}", kind.table(), kind.reason(), rows);
        }
        println!(
            "{} rows in {:.3} s",
            report.total(),
            report.duration.as_secs_f64()
        );
    }
    app.shutdown().await;
    Ok(())
}

/// Builds the app, waiting for the database if it is not reachable yet
/// (a replica may start before its database). Other errors end the process.
async fn build_with_retry(config: Config) -> anyhow::Result<App> {
    let mut delay = Duration::from_millis(250);
    loop {
        match App::build(config.clone(), Arc::new(SystemClock)).await {
            Ok(app) => return Ok(app),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, retry_in = ?delay, "database unavailable at start; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown_signal() => anyhow::bail!("stopped while waiting for the database"),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested; draining");
}
