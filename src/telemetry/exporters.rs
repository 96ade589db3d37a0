//! OTLP exporters over gRPC or HTTP/protobuf, wrapped so that a failed
//! export is counted and logged (once per streak of failures, at WARN).
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{
    ExporterBuildError, MetricExporter, SpanExporter, WithExportConfig, WithHttpConfig,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as SdkSpanExporter};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The standard variable, if set to a value we speak.
    pub fn from_env() -> Option<Self> {
        match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok()?.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            other => {
                tracing::warn!(
                    protocol = other,
                    "OTEL_EXPORTER_OTLP_PROTOCOL not supported (grpc, http/protobuf); using grpc"
                );
                None
            }
        }
    }
}

/// Failed exports, by signal, shared by the wrapped exporters and the
/// `token_authority.telemetry.export_failures` counter.
#[derive(Default)]
pub struct ExportFailures {
    metrics: Streak,
    traces: Streak,
}

#[derive(Default)]
struct Streak {
    failures: AtomicU64,
    failing: AtomicBool,
}

impl Streak {
    fn record(&self, signal: &'static str, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(signal, "OTLP export works again");
                }
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(signal, %error, "OTLP export failed; further failures are only counted until one succeeds");
                }
            }
        }
    }
}

impl ExportFailures {
    pub fn register(self: &Arc<Self>, meter: &Meter) {
        let failures = self.clone();
        meter
            .u64_observable_counter("token_authority.telemetry.export_failures")
            .with_description("Telemetry exports that failed, by signal")
            .with_callback(move |o| {
                o.observe(
                    failures.metrics.failures.load(Ordering::Relaxed),
                    &[KeyValue::new("signal", "metrics")],
                );
                o.observe(
                    failures.traces.failures.load(Ordering::Relaxed),
                    &[KeyValue::new("signal", "traces")],
                );
            })
            .build();
    }
}

pub fn metric_exporter(
    protocol: OtlpProtocol,
    endpoint: &str,
    failures: Arc<ExportFailures>,
) -> Result<CountingMetricExporter, ExporterBuildError> {
    let inner = match protocol {
        OtlpProtocol::Grpc => MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?,
        OtlpProtocol::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_http_client(RuntimeHttpClient::new()?)
            .with_endpoint(http_signal_url(endpoint, "metrics"))
            .build()?,
    };
    Ok(CountingMetricExporter { inner, failures })
}

pub fn span_exporter(
    protocol: OtlpProtocol,
    endpoint: &str,
    failures: Arc<ExportFailures>,
) -> Result<CountingSpanExporter, ExporterBuildError> {
    let inner = match protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?,
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_http_client(RuntimeHttpClient::new()?)
            .with_endpoint(http_signal_url(endpoint, "traces"))
            .build()?,
    };
    Ok(CountingSpanExporter { inner, failures })
}

/// OTLP/HTTP: the base endpoint plus `/v1/<signal>`, as the specification
/// says for `OTEL_EXPORTER_OTLP_ENDPOINT` (an explicit endpoint given to the
/// builder is used as it is).
fn http_signal_url(endpoint: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", endpoint.trim_end_matches('/'))
}

/// How long one OTLP/HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Hyper's client, run on the app's tokio runtime: the SDK's periodic
/// reader and batch processor export from threads of their own, where
/// hyper (which needs a runtime) cannot run by itself.
#[derive(Debug, Clone)]
struct RuntimeHttpClient {
    inner: HyperClient,
    runtime: Handle,
}

impl RuntimeHttpClient {
    fn new() -> Result<Self, ExporterBuildError> {
        let runtime = Handle::try_current().map_err(|e| {
            ExporterBuildError::InternalFailure(format!("OTLP/HTTP needs a tokio runtime: {e}"))
        })?;
        Ok(Self {
            inner: HyperClient::with_default_connector(HTTP_TIMEOUT, None),
            runtime,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await?
    }
}

pub struct CountingMetricExporter {
    inner: MetricExporter,
    failures: Arc<ExportFailures>,
}

impl PushMetricExporter for CountingMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.failures.metrics.record("metrics", &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[derive(Debug)]
pub struct CountingSpanExporter {
    inner: SpanExporter,
    failures: Arc<ExportFailures>,
}

impl std::fmt::Debug for ExportFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportFailures")
    }
}

impl SdkSpanExporter for CountingSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.failures.traces.record("traces", &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_endpoints_get_the_signal_path() {
        assert_eq!(
            http_signal_url("http://collector:4318/", "traces"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_signal_url("http://collector:4318", "metrics"),
            "http://collector:4318/v1/metrics"
        );
    }

    #[test]
    fn protocols_are_named_as_in_the_specification() {
        let parsed: OtlpProtocol = serde_json::from_str("\"http/protobuf\"").unwrap();
        assert_eq!(parsed, OtlpProtocol::HttpProtobuf);
        let parsed: OtlpProtocol = serde_json::from_str("\"grpc\"").unwrap();
        assert_eq!(parsed, OtlpProtocol::Grpc);
    }
}
