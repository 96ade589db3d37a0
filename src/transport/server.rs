//! Assembles and runs the gRPC server.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use super::oversize::OversizeAsResourceExhausted;
use super::rpc_telemetry::RpcTelemetryLayer;
use super::service::TokenAuthorityService;
use crate::domain::Authority;
use crate::proto::token_authority_server::TokenAuthorityServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::telemetry::Telemetry;

/// Largest request message accepted; far above any valid request.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    authority: Arc<Authority>,
    telemetry: &Telemetry,
    request_timeout: Duration,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<TokenAuthorityServer<TokenAuthorityService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Lets grpcurl decode our google.rpc.ErrorInfo / BadRequest details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let authority_service = TokenAuthorityServer::new(TokenAuthorityService::new(authority))
        .max_decoding_message_size(MAX_REQUEST_BYTES);

    Server::builder()
        .timeout(request_timeout)
        .layer(RpcTelemetryLayer::new(
            telemetry.metrics.clone(),
            telemetry.tracer.clone(),
        ))
        .layer(OversizeAsResourceExhausted)
        .add_service(authority_service)
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        // TCP_NODELAY: without it, small unary responses wait for the
        // client's delayed ACK (~40 ms on Linux).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                shutdown.await;
                health
                    .set_not_serving::<TokenAuthorityServer<TokenAuthorityService>>()
                    .await;
            },
        )
        .await?;
    Ok(())
}
