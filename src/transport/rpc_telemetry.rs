//! A server span and an `rpc.server.duration` measurement for every RPC,
//! following the OpenTelemetry RPC semantic conventions. The span continues
//! the caller's trace when the request carries a W3C `traceparent`.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status as SpanStatus, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Tracer;
use tonic::codegen::http::{self, HeaderMap};
use tower::{Layer, Service};

use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct RpcTelemetryLayer {
    metrics: Arc<Metrics>,
    tracer: Tracer,
}

impl RpcTelemetryLayer {
    pub fn new(metrics: Arc<Metrics>, tracer: Tracer) -> Self {
        Self { metrics, tracer }
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
        let (service, method) = split_path(request.uri().path());
        let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
        let tracer = &self.layer.tracer;
        let mut span = tracer
            .span_builder(format!("{service}/{method}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service.clone()),
                KeyValue::new("rpc.method", method.clone()),
            ])
            .start_with_context(tracer, &parent);
        let metrics = self.layer.metrics.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            // Errors are trailers-only responses: their status is in the
            // headers. A successful unary response has none there (0, OK).
            let code = match &result {
                Ok(response) => grpc_status(response.headers()),
                Err(_) => 2,
            };
            span.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
            if code != 0 {
                span.set_status(SpanStatus::error(format!("gRPC status {code}")));
            }
            span.end();
            let millis = started.elapsed().as_secs_f64() * 1000.0;
            metrics.rpc_finished(&service, &method, code, millis);
            tracing::debug!(%service, %method, code, millis, "rpc");
            result
        })
    }
}

fn split_path(path: &str) -> (String, String) {
    let path = path.trim_start_matches('/');
    match path.rsplit_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (path.to_owned(), String::new()),
    }
}

fn grpc_status(headers: &HeaderMap) -> i64 {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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
