//! Health for load balancers and orchestrators, and `/metrics` for
//! Prometheus.
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::telemetry::PROMETHEUS_CONTENT_TYPE;
use crate::transport::health::HealthReport;

pub async fn livez() -> Response {
    health_response(true, serde_json::json!({ "status": "live" }))
}

pub async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let HealthReport { ready, detail, .. } = (state.health)();
    health_response(ready, detail)
}

pub async fn readyz_validate(State(state): State<Arc<HttpState>>) -> Response {
    let HealthReport {
        validate, detail, ..
    } = (state.health)();
    health_response(validate, detail)
}

fn health_response(ok: bool, body: serde_json::Value) -> Response {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The app's instruments in Prometheus text.
pub async fn prometheus_metrics(State(state): State<Arc<HttpState>>) -> Response {
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::warn!(%error, "rendering /metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
