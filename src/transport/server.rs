//! Assembles and runs the gRPC server: the services of a mode (authority or
//! sidecar) behind the telemetry, codec-status and access layers, with
//! reflection and health, over TLS when configured.
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::access_layer::{AccessControl, AccessLayer};
use super::admin_service::AdminService;
use super::codec_status::CodecStatusLayer;
use super::connections::Incoming;
use super::envoy_authz::ExtAuthz;
use super::health::HealthProbe;
use super::rpc_telemetry::RpcTelemetryLayer;
use super::service::TokenAuthorityService;
use crate::config::connections::ConnectionsConfig;
use crate::config::tls::{ClientAuth, TlsConfig};
use crate::config::Config;
use crate::domain::Authority;
use crate::proto::admin_server::AdminServer;
use crate::proto::token_authority_server::TokenAuthorityServer;
use crate::proto::{ENVOY_AUTHZ_DESCRIPTOR_SET, FILE_DESCRIPTOR_SET, GOOGLE_RPC_DESCRIPTOR_SET};
use crate::telemetry::Telemetry;
use crate::verify::validation::TokenValidation;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;

/// Largest request message accepted; far above any valid request.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest header block HTTP/2 accepts; below it, the access layer refuses
/// metadata over `limits.max_metadata_bytes` with INVALID_ARGUMENT.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// How often idle per-caller rate-limit state is dropped.
const RATE_STATE_CLEANUP: Duration = Duration::from_secs(60);

/// After the shutdown grace, how long the connections cut get to wind down.
const AFTER_CUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("tls: {0}")]
    Tls(String),
}

/// The server's TLS settings, if TLS is configured.
pub fn tls_config(config: &TlsConfig) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ServeError::Tls(format!("reading {}: {e}", path.display())))
    };
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(cert)?, read(key)?))
        .timeout(config.handshake_timeout);
    if let Some(ca) = &config.client_ca_file {
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(config.client_auth == ClientAuth::Optional);
    }
    Ok(Some(tls))
}

/// Everything a gRPC server needs besides its routes.
pub struct GrpcServer<'a> {
    pub telemetry: &'a Telemetry,
    pub access: Arc<AccessControl>,
    pub tls: Option<ServerTlsConfig>,
    pub request_timeout: Duration,
    pub connections: ConnectionsConfig,
}

impl GrpcServer<'_> {
    /// Serves `routes` (plus reflection) until `shutdown` completes, then
    /// drains in-flight requests for at most `connections.shutdown_grace`.
    pub async fn run(
        self,
        routes: Routes,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Lets grpcurl decode our google.rpc.ErrorInfo / BadRequest details.
                .register_encoded_file_descriptor_set(GOOGLE_RPC_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(ENVOY_AUTHZ_DESCRIPTOR_SET)
        };
        let routes = routes
            .add_service(reflection().build_v1()?)
            // grpcurl before 1.9 speaks only v1alpha.
            .add_service(reflection().build_v1alpha()?);
        let mut builder = Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let access = self.access.clone();
        let cleanup = tokio::spawn(async move {
            let mut every = tokio::time::interval(RATE_STATE_CLEANUP);
            loop {
                every.tick().await;
                access.forget_idle();
            }
        });
        let incoming = Incoming::new(listener, &self.connections, "gRPC");
        let registry = incoming.registry();
        tracing::info!(
            max_connections = incoming.max(),
            handshake_timeout = ?self.connections.handshake_timeout,
            "gRPC connection limits"
        );
        let (stopping, stop_signalled) = oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(());
        };
        let grace = self.connections.shutdown_grace;
        let grace_over = async move {
            match stop_signalled.await {
                Ok(()) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending().await,
            }
        };
        let mut serving = pin!(builder
            .timeout(self.request_timeout)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .http2_keepalive_interval(Some(self.connections.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(self.connections.http2_keepalive_timeout))
            .layer(RpcTelemetryLayer::new(
                self.telemetry.metrics.clone(),
                self.telemetry.tracer.clone(),
            ))
            .layer(CodecStatusLayer)
            .layer(AccessLayer(self.access))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown));
        let served = tokio::select! {
            served = &mut serving => served,
            () = grace_over => {
                let cut = registry.close_all();
                tracing::warn!(
                    connections = cut,
                    grace = ?grace,
                    "shutdown grace period over: closing connections with requests still running"
                );
                tokio::time::timeout(AFTER_CUT, serving).await.unwrap_or(Ok(()))
            }
        };
        cleanup.abort();
        served?;
        Ok(())
    }
}

/// The services a validator offers (authority and sidecar alike):
/// TokenAuthority (all of it, or its validation RPCs) and Envoy's Check.
pub fn validation_routes(
    service: TokenAuthorityService,
    validation: Arc<dyn TokenValidation>,
    access: Arc<AccessControl>,
    realm: String,
) -> Routes {
    Routes::new(TokenAuthorityServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(
            AuthorizationServer::new(ExtAuthz::new(validation, access, realm))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
}

/// The authority's own services (without health and reflection).
/// `stopping` turns true when the server starts shutting down.
pub fn authority_routes(
    authority: Arc<Authority>,
    access: Arc<AccessControl>,
    config: &Config,
    stopping: watch::Receiver<bool>,
) -> Routes {
    let service = TokenAuthorityService::authority(
        authority.clone(),
        access.clone(),
        config.watch_heartbeat,
        stopping,
    );
    validation_routes(
        service,
        authority.clone(),
        access,
        config.tokens.issuer.clone(),
    )
    .add_service(
        AdminServer::new(AdminService::new(authority)).max_decoding_message_size(MAX_REQUEST_BYTES),
    )
}

/// The authority's gRPC server: every service, and health as `health`
/// reports it until `stopping` turns true.
pub async fn serve_authority(
    authority: Arc<Authority>,
    config: &Config,
    server: GrpcServer<'_>,
    health: HealthProbe,
    listener: TcpListener,
    stopping: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let reporting = tokio::spawn(super::health::report(reporter, health, stopping.clone()));
    let routes = authority_routes(authority, server.access.clone(), config, stopping.clone())
        .add_service(health_service);
    let mut stopped = stopping;
    let served = server
        .run(routes, listener, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await;
    reporting.abort();
    served
}
