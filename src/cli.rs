//! The `token-authority` command line.
mod audit;
pub mod keys_rewrap;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

use crate::access::new_bearer_key;
use crate::app::{bind, build_with_retry, listen_for_shutdown, shutdown_signal, App};
use crate::config::{Config, Loaded};
use crate::domain::KeyInfo;
use crate::storage::Store;
use crate::telemetry;
use crate::verify::caller::Caller;
use crate::verify::clock::{duration_millis, SystemClock};
use crate::verify::keys::KeyAlgorithm;

/// The version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TA_GIT_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "token-authority", version = VERSION, about = "gRPC token authority")]
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
        #[command(flatten)]
        listeners: Listeners,
    },
    /// Run a local validation sidecar that follows an authority: serves
    /// Validate, Envoy's Check and GetJwks with no call upstream per request.
    Sidecar {
        /// The authority, e.g. https://authority:50051 (overrides sidecar.upstream).
        #[arg(long)]
        upstream: Option<String>,
        #[command(flatten)]
        listeners: Listeners,
    },
    /// Signing keys: rotate, list, or re-seal under a new KEK (works on the
    /// database directly).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Caller credentials.
    Callers {
        #[command(subcommand)]
        command: CallersCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// The configuration: check it, or print the defaults.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the audit trail, newest first (reads the database directly).
    Audit(audit::AuditArgs),
    /// Delete expired and revoked state (what `serve` does every purge.interval).
    Purge {
        /// Run one purge, print what it deleted, and exit.
        #[arg(long)]
        once: bool,
    },
}

/// Where to listen, for `serve` and `sidecar`.
#[derive(Debug, Args)]
pub struct Listeners {
    /// gRPC listen address, overriding `listen` (serve, default
    /// 127.0.0.1:50051) or `sidecar.listen` (sidecar, default 127.0.0.1:50061).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// HTTP listener (JWKS, discovery, /livez, /readyz), overriding http.listen.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Allow what is refused off loopback: no authentication, bearer keys
    /// without TLS, and (sidecar) a plain-HTTP upstream.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key: published now, signing after --activate-in
    /// (default keys.publish_ahead); the current key retires then.
    Rotate {
        /// EdDSA or ES256 (default: keys.algorithm).
        #[arg(long)]
        algorithm: Option<String>,
        /// Delay before the new key signs, e.g. 10m; 0s signs at once.
        #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
        activate_in: Option<Duration>,
    },
    /// Withdraw a compromised key: it stops signing and verifying on every
    /// replica and sidecar, and leaves the JWKS. A pending key takes over,
    /// or a new one is generated. See the README's emergency procedure.
    Withdraw {
        /// The key's id, as `keys list` shows it. Kids are base64url, so
        /// one may start with `-`: it is still taken as the kid.
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show every key with its status and how long it verifies.
    List,
    /// Re-seal every signing key and secret under one key-encryption key
    /// (the configured current one, or --new-kek-*), in one transaction.
    Rewrap(keys_rewrap::RewrapArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration (--config, TOKEN_AUTHORITY_* variables) and
    /// list every problem; exits non-zero if there is one. Touches no database.
    Check,
    /// Print every setting with its default, as TOML.
    Defaults,
}

#[derive(Debug, Subcommand)]
pub enum CallersCommand {
    /// Print a new random bearer key, and the SHA-256 to put in
    /// `[[auth.callers]] key_sha256`. The key itself is shown only here.
    NewKey,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Config { command } = &cli.command {
        return config_command(command, cli.config.as_deref(), cli.database_url);
    }
    let Loaded {
        mut config,
        warnings,
    } = Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.database_url {
        config.database.url = url;
    }
    telemetry::init_logging(&config.log);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let stopping = listen_for_shutdown().context("listening for signals")?;
    match cli.command {
        Command::Migrate => {
            let store = Store::connect(&crate::app::connect_settings(&config.database))
                .await
                .context("connecting to the database")?;
            store.migrate().await.context("migrating")?;
            tracing::info!("database is up to date");
            store.close().await?;
            Ok(())
        }
        Command::Config { .. } => Ok(()),
        Command::Purge { once } => purge(config, once, &stopping).await,
        Command::Keys { command } => keys(config, command).await,
        Command::Audit(args) => audit::run(config, args).await,
        Command::Sidecar {
            upstream,
            listeners,
        } => {
            if upstream.is_some() {
                config.sidecar.upstream = upstream;
            }
            if let Some(listen) = listeners.listen {
                config.sidecar.listen = listen;
            }
            if listeners.http_listen.is_some() {
                config.http.listen = listeners.http_listen;
            }
            config.check()?;
            crate::sidecar::run(config, listeners.insecure, &stopping).await?;
            Ok(())
        }
        Command::Callers {
            command: CallersCommand::NewKey,
        } => {
            let (key, digest) =
                new_bearer_key().map_err(|_| anyhow::anyhow!("random number generator failed"))?;
            println!("bearer key (give it to the calling service; it is not stored anywhere):");
            println!("  {key}");
            println!("for the configuration:");
            println!("  key_sha256 = [\"{}\"]", digest.to_hex());
            Ok(())
        }
        Command::Serve { listeners } => {
            if let Some(listen) = listeners.listen {
                config.listen = listen;
            }
            if listeners.http_listen.is_some() {
                config.http.listen = listeners.http_listen;
            }
            let listen = config.listen;
            config.check()?;
            config.check_exposure(listen, listeners.insecure)?;
            if !config.has_authentication() {
                tracing::warn!("no callers configured: every local process may call every RPC; configure [[auth.callers]] before exposing this server");
            }
            let Some(app) = build_with_retry(config.clone(), &stopping).await? else {
                tracing::info!("stopped before serving");
                return Ok(());
            };
            let (listener, http) = bind(listen, config.http.listen).await?;
            tracing::info!(address = %listener.local_addr()?, tls = config.tls.is_enabled(), "serving gRPC");
            if let Some(http) = &http {
                tracing::info!(address = %http.local_addr()?, "serving HTTP (JWKS, discovery, health)");
            }
            app.serve(listener, http, shutdown_signal(&stopping))
                .await?;
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// `config check` and `config defaults`: before logging, which the
/// configuration sets up, and without a database.
fn config_command(
    command: &ConfigCommand,
    file: Option<&Path>,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Defaults => {
            print!("{}", crate::config::defaults_toml());
            Ok(())
        }
        ConfigCommand::Check => {
            let mut inspection = Config::inspect(file);
            if let (Some(config), Some(url)) = (inspection.config.as_mut(), database_url) {
                config.database.url = url;
            }
            if let Some(config) = &inspection.config {
                if let Err(e) = crate::access::Policy::new(&config.auth) {
                    inspection.problems.push(e.to_string());
                }
                // What `serve` would refuse (without --insecure).
                if let Err(e) = config.check_exposure(config.listen, false) {
                    inspection.problems.push(e.to_string());
                }
            }
            for warning in &inspection.warnings {
                eprintln!("warning: {warning}");
            }
            for problem in &inspection.problems {
                eprintln!("error: {problem}");
            }
            let source = file
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "defaults and environment".into());
            match inspection.problems.len() {
                0 => {
                    println!("{source}: configuration is valid");
                    Ok(())
                }
                n => anyhow::bail!("{source}: {n} problem(s) in the configuration"),
            }
        }
    }
}

async fn keys(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let app = App::open(config.clone(), Arc::new(SystemClock)).await?;
    let operator = Caller {
        name: Arc::from(format!("cli:{}", whoami())),
        ..Caller::anonymous()
    };
    match command {
        KeysCommand::Rotate {
            algorithm,
            activate_in,
        } => {
            let algorithm = algorithm
                .map(|a| {
                    KeyAlgorithm::parse(&a)
                        .ok_or_else(|| anyhow::anyhow!("--algorithm must be EdDSA or ES256"))
                })
                .transpose()?;
            let key = app
                .authority
                .rotate_signing_key(&operator, algorithm, activate_in.map(duration_millis))
                .await?;
            print_keys(&[key]);
        }
        KeysCommand::Withdraw { kid, reason } => {
            let withdrawal = app
                .authority
                .withdraw_signing_key(&operator, &kid, &reason)
                .await?;
            if withdrawal.already_withdrawn {
                println!("key {kid} was already withdrawn; nothing changed");
            } else {
                match (&withdrawal.successor, withdrawal.successor_generated) {
                    (Some(next), true) => println!(
                        "key {kid} withdrawn; new key {next} signs from now (no key was pending: \
                         verifiers that have not synced yet refuse its tokens until they do)"
                    ),
                    (Some(next), false) => {
                        println!("key {kid} withdrawn; pending key {next} signs from now")
                    }
                    (None, _) => println!("key {kid} withdrawn; the signing key is unchanged"),
                }
            }
            print_keys(&app.authority.list_signing_keys().await?);
        }
        KeysCommand::List => print_keys(&app.authority.list_signing_keys().await?),
        KeysCommand::Rewrap(args) => {
            let now = app.authority.now();
            keys_rewrap::run(&app.store, &config.keys, &args, now, &operator.name).await?
        }
    }
    app.shutdown().await;
    Ok(())
}

fn print_keys(keys: &[KeyInfo]) {
    let time = |ms: i64| {
        std::time::UNIX_EPOCH
            .checked_add(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
            .map(|t| humantime_serde::re::humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default()
    };
    println!(
        "{:<18} {:<6} {:<9} {:<21} {:<21} {:<21}",
        "kid", "alg", "status", "signs from", "retired at", "verifies until"
    );
    for k in keys {
        println!(
            "{:<18} {:<6} {:<9} {:<21} {:<21} {:<21}",
            k.kid,
            k.algorithm,
            k.status.as_str(),
            time(k.activates_at),
            k.retired_at.map(time).unwrap_or_else(|| "-".into()),
            k.verifies_until.map(time).unwrap_or_else(|| "-".into()),
        );
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

async fn purge(config: Config, once: bool, stopping: &watch::Receiver<bool>) -> anyhow::Result<()> {
    let app = App::open(config.clone(), Arc::new(SystemClock)).await?;
    if !once {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let purger = app.purger.clone();
        let every = config.purge.interval;
        let task = tokio::spawn(async move { purger.run(every, stopped).await });
        shutdown_signal(stopping).await;
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_kid_starting_with_a_hyphen_is_a_kid() {
        let cli = Cli::try_parse_from([
            "token-authority",
            "keys",
            "withdraw",
            "-Mq3xZ1",
            "--reason",
            "drill",
        ])
        .expect("parses");
        match cli.command {
            Command::Keys {
                command: KeysCommand::Withdraw { kid, reason },
            } => assert_eq!((kid.as_str(), reason.as_str()), ("-Mq3xZ1", "drill")),
            other => panic!("{other:?}"),
        }
    }
}
