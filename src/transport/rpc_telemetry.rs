//! A server span and an `rpc.server.duration` measurement for every RPC,
//! following the OpenTelemetry RPC semantic conventions, and the outcome
//! (OK or the google.rpc.ErrorInfo reason) of Refresh and Validate. The span
//! is a `tracing` span, so log lines and database spans inside the RPC join
//! its trace; it continues the caller's trace when the request carries a
//! W3C `traceparent`.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Tracer;
use tonic::codegen::http::{self, HeaderMap};
use tonic_types::StatusExt;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::{AppTracer, Metrics};

const AUTHORITY_SERVICE: &str = "token_authority.v1.TokenAuthority";

#[derive(Clone)]
pub struct RpcTelemetryLayer {
    metrics: Arc<Metrics>,
    tracer: Option<AppTracer>,
}

impl RpcTelemetryLayer {
    pub fn new(metrics: Arc<Metrics>, tracer: Option<Tracer>) -> Self {
        Self {
            metrics,
            tracer: tracer.map(AppTracer),
        }
    }
}

impl<S> Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetry {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcTelemetry<S> {
    inner: S,
    layer: RpcTelemetryLayer,
}

#[derive(Clone, Copy)]
enum Outcome {
    Refresh,
    Validate,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcTelemetry<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let metrics = self.layer.metrics.clone();
        let rpc = metrics.rpc(request.uri().path());
        let outcome = match (rpc.service.as_str(), rpc.method.as_str()) {
            (AUTHORITY_SERVICE, "Refresh") => Some(Outcome::Refresh),
            (AUTHORITY_SERVICE, "Validate") => Some(Outcome::Validate),
            _ => None,
        };
        let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
        let parent = match &self.layer.tracer {
            Some(tracer) => parent.with_value(tracer.clone()),
            None => parent,
        };
        let span = tracing::info_span!(
            "rpc",
            otel.name = rpc.name.as_str(),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = rpc.service.as_str(),
            rpc.method = rpc.method.as_str(),
            rpc.grpc.status_code = Empty,
        );
        // Only fails for a span no subscriber records.
        let _ = span.set_parent(parent);
        let started = Instant::now();
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let result = response.instrument(span.clone()).await;
            // Errors are trailers-only responses: their status is in the
            // headers. A successful unary response has none there (0, OK).
            let (code, headers) = match &result {
                Ok(response) => (grpc_status(response.headers()), Some(response.headers())),
                Err(_) => (2, None),
            };
            span.record("rpc.grpc.status_code", code);
            if code != 0 {
                span.record("otel.status_code", "error");
            }
            let millis = started.elapsed().as_secs_f64() * 1000.0;
            metrics.rpc_finished(&rpc, code, millis);
            if let Some(outcome) = outcome {
                let reason = match (code, headers) {
                    (0, _) => None,
                    (_, Some(headers)) => error_reason(headers),
                    (_, None) => None,
                };
                let reason = reason
                    .as_deref()
                    .unwrap_or(if code == 0 { "OK" } else { "UNKNOWN" });
                match outcome {
                    Outcome::Refresh => metrics.refresh_outcome(reason),
                    Outcome::Validate => metrics.validate_outcome(reason),
                }
            }
            span.in_scope(|| {
                tracing::debug!(
                    service = rpc.service.as_str(),
                    method = rpc.method.as_str(),
                    code,
                    millis,
                    "rpc"
                )
            });
            result
        })
    }
}

fn grpc_status(headers: &HeaderMap) -> i64 {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The google.rpc.ErrorInfo reason in `grpc-status-details-bin`.
fn error_reason(headers: &HeaderMap) -> Option<String> {
    tonic::Status::from_header_map(headers)?
        .get_details_error_info()
        .map(|info| info.reason)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
