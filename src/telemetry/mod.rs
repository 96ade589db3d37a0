//! Logs (`tracing`), OpenTelemetry metrics and traces: exported over OTLP
//! (gRPC or HTTP/protobuf) when an endpoint is configured, metrics also on
//! the HTTP listener's `/metrics` in Prometheus text. Providers belong to
//! the running app, not to process-wide globals, so that each app (and each
//! test) reports to its own collector; see `traces` for how the global
//! `tracing` subscriber finds them.
mod exporters;
mod json_log;
mod logging;
mod metrics;
mod otel;
mod prometheus;
mod traces;

pub use exporters::OtlpProtocol;
pub use json_log::JsonWithTraceIds;
pub use logging::init_logging;
pub use metrics::{Metrics, Observed, Rpc};
pub use otel::{Telemetry, TelemetryError};
pub use prometheus::{PrometheusMetrics, CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE};
pub use traces::{otel_layer, AppTracer};
