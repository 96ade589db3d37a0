//! The app's instruments as Prometheus text, for `/metrics`: an SDK reader
//! (opentelemetry-prometheus) beside the OTLP one, so both carry the same
//! instruments. Each app has its own registry.
use opentelemetry_prometheus::PrometheusExporter;
use prometheus::{Registry, TextEncoder};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
pub struct PrometheusMetrics {
    registry: Registry,
}

impl PrometheusMetrics {
    /// A registry and the reader that feeds it, for the meter provider.
    pub fn new() -> Result<(Self, PrometheusExporter), opentelemetry_sdk::error::OTelSdkError> {
        let registry = Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()?;
        Ok((Self { registry }, reader))
    }

    /// What a scrape returns: collects every instrument now.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
