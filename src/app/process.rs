//! Process plumbing shared by the commands that serve: signals, binding
//! listeners, and waiting for the database at start.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{App, AppError};
use crate::config::Config;
use crate::verify::clock::SystemClock;

/// Completes once the flag turns true (or its sender is gone).
pub async fn stopped_signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Starts listening for ctrl-c and SIGTERM at once, so that a signal that
/// arrives at any point of start-up (connecting, migrating, waiting for the
/// database) is not lost; the receiver turns true when one arrives.
pub fn listen_for_shutdown() -> std::io::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested; draining");
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Completes on ctrl-c or SIGTERM.
pub fn shutdown_signal(stopping: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> {
    stopped_signal(stopping.clone())
}

/// The gRPC listener, and the HTTP one if configured.
pub async fn bind(
    grpc: SocketAddr,
    http: Option<SocketAddr>,
) -> Result<(TcpListener, Option<TcpListener>), BindError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })
    };
    let grpc = bind(grpc).await?;
    let http = match http {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    Ok((grpc, http))
}

#[derive(Debug, thiserror::Error)]
#[error("binding {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Builds the app, waiting for the database if it is not reachable yet
/// (a replica may start before its database). Other errors end the process;
/// a shutdown signal at any point ends the wait (`None`).
pub async fn build_with_retry(
    config: Config,
    stopping: &watch::Receiver<bool>,
) -> Result<Option<App>, AppError> {
    let mut delay = Duration::from_millis(250);
    loop {
        let built = tokio::select! {
            built = App::build(config.clone(), Arc::new(SystemClock)) => built,
            _ = shutdown_signal(stopping) => return Ok(None),
        };
        match built {
            Ok(app) => return Ok(Some(app)),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, retry_in = ?delay, "database unavailable at start; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown_signal(stopping) => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
