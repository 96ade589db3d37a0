//! OpenTelemetry providers and OTLP exporters.
use std::sync::Arc;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;

use super::Metrics;
use crate::config::TelemetryConfig;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The app's metrics and tracer. Without an endpoint, instruments and spans
/// are recorded nowhere and nothing is exported.
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub tracer: Tracer,
    meter_provider: SdkMeterProvider,
    tracer_provider: SdkTracerProvider,
}

impl Telemetry {
    /// The endpoint is `telemetry.otlp_endpoint`, else the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`. Must be called inside a tokio runtime.
    pub fn new(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let endpoint = config
            .otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|e| !e.is_empty());
        let resource = Resource::builder()
            .with_service_name("token-authority")
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let mut meters = SdkMeterProvider::builder().with_resource(resource.clone());
        let mut tracers = SdkTracerProvider::builder().with_resource(resource);
        if let Some(endpoint) = endpoint {
            let metric_exporter = MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()?;
            meters = meters.with_reader(
                PeriodicReader::builder(metric_exporter)
                    .with_interval(config.metrics_interval)
                    .build(),
            );
            let span_exporter = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            tracers = tracers.with_batch_exporter(span_exporter);
        }
        let meter_provider = meters.build();
        let tracer_provider = tracers.build();
        Ok(Self {
            metrics: Arc::new(Metrics::new(&meter_provider.meter("token-authority"))),
            tracer: tracer_provider.tracer("token-authority"),
            meter_provider,
            tracer_provider,
        })
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
