//! OpenTelemetry providers: a Prometheus reader always, OTLP exporters
//! when an endpoint is configured.
use std::sync::Arc;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;

use super::exporters::{self, ExportFailures, OtlpProtocol};
use super::metrics::{observe, Observed};
use super::prometheus::PrometheusMetrics;
use super::traces::ExportingTraces;
use super::Metrics;
use crate::config::TelemetryConfig;

const SERVICE_NAME: &str = "token-authority";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("building the Prometheus exporter: {0}")]
    Prometheus(#[from] opentelemetry_sdk::error::OTelSdkError),
}

/// The app's metrics and tracer. Without an endpoint, nothing is exported
/// over OTLP; `/metrics` serves the instruments either way.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    /// Only when traces are exported: building SDK spans that go nowhere
    /// cost ~10% of the cheapest RPC's throughput. Without it, RPC spans
    /// still carry a caller's `traceparent` ids into the logs.
    pub tracer: Option<Tracer>,
    pub prometheus: PrometheusMetrics,
    meter: Meter,
    meter_provider: SdkMeterProvider,
    tracer_provider: SdkTracerProvider,
    _exporting: Option<ExportingTraces>,
}

impl Telemetry {
    /// The endpoint is `telemetry.otlp_endpoint`, else the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; the protocol `telemetry.otlp_protocol`,
    /// else `OTEL_EXPORTER_OTLP_PROTOCOL`, else gRPC. Must be called inside
    /// a tokio runtime.
    pub fn new(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let endpoint = config
            .otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|e| !e.is_empty());
        let protocol = config
            .otlp_protocol
            .or_else(OtlpProtocol::from_env)
            .unwrap_or(OtlpProtocol::Grpc);
        let resource = resource();
        let (prometheus, reader) = PrometheusMetrics::new()?;
        let failures = Arc::new(ExportFailures::default());
        let mut meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(reader);
        let mut tracers = SdkTracerProvider::builder().with_resource(resource);
        let exporting = endpoint.is_some();
        if let Some(endpoint) = endpoint {
            let metric_exporter =
                exporters::metric_exporter(protocol, &endpoint, failures.clone())?;
            meters = meters.with_reader(
                PeriodicReader::builder(metric_exporter)
                    .with_interval(config.metrics_interval)
                    .build(),
            );
            let span_exporter = exporters::span_exporter(protocol, &endpoint, failures.clone())?;
            tracers = tracers.with_batch_exporter(span_exporter);
        }
        let meter_provider = meters.build();
        let tracer_provider = tracers.build();
        let meter = meter_provider.meter("token-authority");
        failures.register(&meter);
        Ok(Self {
            metrics: Arc::new(Metrics::new(&meter)),
            tracer: exporting.then(|| tracer_provider.tracer("token-authority")),
            prometheus,
            meter,
            meter_provider,
            tracer_provider,
            _exporting: exporting.then(ExportingTraces::start),
        })
    }

    /// Registers the instruments read from the app's parts at collection.
    pub fn observe(&self, observed: Observed) {
        observe(&self.meter, observed);
    }

    /// Exports what is pending. Runs on a blocking thread: the SDK's flush waits.
    pub async fn shutdown(self) {
        let flushed = tokio::task::spawn_blocking(move || {
            let metrics = self.meter_provider.shutdown();
            let traces = self.tracer_provider.shutdown();
            (metrics, traces)
        })
        .await;
        if let Ok((metrics, traces)) = flushed {
            if let Err(e) = metrics {
                tracing::debug!(error = %e, "metrics shutdown");
            }
            if let Err(e) = traces {
                tracing::debug!(error = %e, "traces shutdown");
            }
        }
    }
}

/// `service.name` is ours unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` name another; the latter adds attributes.
fn resource() -> Resource {
    let builder = Resource::builder_empty()
        .with_service_name(SERVICE_NAME)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_detector(Box::new(EnvResourceDetector::new()));
    match std::env::var("OTEL_SERVICE_NAME") {
        Ok(name) if !name.trim().is_empty() => builder.with_service_name(name),
        _ => builder,
    }
    .build()
}
