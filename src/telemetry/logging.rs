//! Logging. Tokens and keys are never passed to a log macro; requests are
//! logged by method and outcome only. Lines inside an RPC carry the ids of
//! its trace (see `json_log` for the JSON fields).
use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::json_log::JsonWithTraceIds;
use super::traces::otel_layer;
use crate::config::LogConfig;

pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = if config.json {
        fmt.event_format(JsonWithTraceIds).boxed()
    } else {
        fmt.boxed()
    };
    // A second init (tests) is harmless; ignore it.
    let _ = tracing_subscriber::registry()
        .with(otel_layer())
        .with(fmt.with_filter(filter))
        .try_init();
}
