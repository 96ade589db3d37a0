//! Logs (`tracing`), and OpenTelemetry metrics and traces exported over OTLP
//! gRPC when an endpoint is configured. Providers belong to the running app,
//! not to process-wide globals, so that each app (and each test) reports to
//! its own collector.
mod logging;
mod metrics;
mod otel;

pub use logging::init_logging;
pub use metrics::Metrics;
pub use otel::{Telemetry, TelemetryError};
