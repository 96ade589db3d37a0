//! Runs a sidecar: follows the upstream, serves Validate, Check, GetJwks
//! and WatchRevocations from the local copy, and reports its state in
//! gRPC health (`token_authority.v1.Upstream` is NOT_SERVING while the
//! authority is unreachable; the overall status only once the cached state
//! is too old to use) and on `/readyz`.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use super::upstream::UpstreamError;
use super::upstream::{self, Upstream};
use super::Sidecar;
use crate::access::PolicyError;
use crate::app::{bind, shutdown_signal, stopped_signal, BindError};
use crate::config::{Config, ConfigError};
use crate::telemetry::{Telemetry, TelemetryError};
use crate::transport::access_layer::AccessControl;
use crate::transport::health::{self, HealthProbe, HealthReport};
use crate::transport::http;
use crate::transport::ServeError;
use crate::transport::{self, GrpcServer, TokenAuthorityService};
use crate::verify::clock::SystemClock;

/// The health service name that tracks the link to the authority.
pub const UPSTREAM_HEALTH: &str = "token_authority.v1.Upstream";

const STATUS_EVERY: Duration = Duration::from_millis(200);

/// Why a sidecar could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("HTTP listener: {0}")]
    Http(#[from] std::io::Error),
}

/// The sidecar process: assembles a sidecar from the configuration and
/// serves until `stopping` turns true.
pub async fn run(
    config: Config,
    insecure: bool,
    stopping: &watch::Receiver<bool>,
) -> Result<(), SidecarError> {
    let listen = config.sidecar.listen;
    config.check_exposure(listen, insecure)?;
    let upstream = Upstream::from_config(&config.sidecar, config.watch_heartbeat, insecure)?;
    let telemetry = Telemetry::new(&config.telemetry)?;
    let sidecar = Arc::new(
        Sidecar::new(
            config.tokens.issuer.clone(),
            config.tokens.verified_token_cache,
            config.tokens.clock_leeway,
            config.sidecar.max_staleness,
            Arc::new(SystemClock),
        )
        .with_binding_required(config.tokens.binding_required_tenants.clone()),
    );
    let (listener, http) = bind(listen, config.http.listen).await?;
    tracing::info!(address = %listener.local_addr()?, upstream = ?config.sidecar.upstream, "sidecar serving gRPC");
    let served = serve(
        sidecar,
        upstream,
        &config,
        &telemetry,
        listener,
        http,
        shutdown_signal(stopping),
    )
    .await;
    telemetry.shutdown().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

pub async fn serve(
    sidecar: Arc<Sidecar>,
    upstream: Upstream,
    config: &Config,
    telemetry: &Telemetry,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SidecarError> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let follower = tokio::spawn(upstream::follow(sidecar.clone(), upstream, stopped.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    let probe_sidecar = sidecar.clone();
    let probe: HealthProbe = Arc::new(move || {
        let status = probe_sidecar.status();
        // A sidecar serves only validation: ready means it can validate.
        HealthReport {
            ready: status.serving(),
            validate: status.serving(),
            detail: status.to_json(),
        }
    });
    let reporting = tokio::spawn(health::report(
        health.clone(),
        probe.clone(),
        stopped.clone(),
    ));
    let reporter = {
        let (sidecar, health, mut stopped) = (sidecar.clone(), health.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(STATUS_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stopped.changed() => return,
                }
                sidecar.prune();
                let link = if sidecar.status().upstream_connected {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health.set_service_status(UPSTREAM_HEALTH, link).await;
            }
        })
    };

    let access = Arc::new(AccessControl::new(config, None, sidecar.clock())?);
    let http = http_listener
        .map(|listener| {
            http::spawn(
                http::HttpBackend {
                    validation: sidecar.clone(),
                    authority: None,
                    access: access.clone(),
                    metrics: telemetry.metrics.clone(),
                },
                config,
                probe,
                telemetry.prometheus.clone(),
                listener,
                stopped_signal(stopped.clone()),
            )
        })
        .transpose()?;

    let server = GrpcServer {
        telemetry,
        access: access.clone(),
        tls: transport::tls_config(&config.tls)?,
        request_timeout: config.request_timeout,
        connections: config.connections.clone(),
    };
    let service = TokenAuthorityService::validation_only(
        sidecar.clone(),
        access.clone(),
        config.watch_heartbeat,
        stopped.clone(),
    );
    let routes = transport::validation_routes(
        service,
        sidecar.clone(),
        access,
        config.tokens.issuer.clone(),
    )
    .add_service(health_service);
    let served = server
        .run(routes, listener, stopped_signal(stopped.clone()))
        .await;
    let http_served = http::finished(http).await;
    let _ = follower.await;
    reporter.abort();
    reporting.abort();
    served?;
    http_served?;
    Ok(())
}
