//! The HTTP listener: the key set for standard JWT libraries and Envoy's
//! `jwt_authn` (`/.well-known/jwks.json`), a minimal OpenID discovery
//! document, health (`/livez`, `/readyz`, `/readyz/validate`, and
//! `/healthz`, an alias of `/readyz`), and `/metrics` (Prometheus text).
//! Read-only and public: no authentication.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::connections::HttpListener;
use super::health::{HealthProbe, HealthReport};
use crate::config::Config;
use crate::telemetry::{PrometheusMetrics, PROMETHEUS_CONTENT_TYPE};
use crate::verify::keys::jwk::JwkSet;
use crate::verify::validation::TokenValidation;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const METRICS_PATH: &str = "/metrics";

pub struct HttpSettings {
    pub issuer: String,
    /// Base URL of this listener as clients reach it, for `jwks_uri`.
    pub public_url: String,
    pub jwks_max_age: Duration,
}

struct HttpState {
    validation: Arc<dyn TokenValidation>,
    settings: HttpSettings,
    health: HealthProbe,
    metrics: PrometheusMetrics,
}

/// Starts the HTTP listener in a task: the key set of `validation`, the
/// discovery document for `config`, and `health` on the health paths.
pub fn spawn(
    validation: Arc<dyn TokenValidation>,
    config: &Config,
    health: HealthProbe,
    metrics: PrometheusMetrics,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
    let public_url = match &config.http.public_url {
        Some(url) => url.clone(),
        None => format!("http://{}", listener.local_addr()?),
    };
    let settings = HttpSettings {
        issuer: config.tokens.issuer.clone(),
        public_url,
        jwks_max_age: config.http.jwks_max_age,
    };
    let listener = HttpListener::new(listener, &config.connections)?;
    Ok(tokio::spawn(serve(
        validation, settings, health, metrics, listener, shutdown,
    )))
}

/// Waits for a listener started by `spawn`, if any.
pub async fn finished(task: Option<JoinHandle<std::io::Result<()>>>) -> std::io::Result<()> {
    match task {
        Some(task) => task.await.unwrap_or(Ok(())),
        None => Ok(()),
    }
}

pub async fn serve(
    validation: Arc<dyn TokenValidation>,
    settings: HttpSettings,
    health: HealthProbe,
    metrics: PrometheusMetrics,
    listener: HttpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(HttpState {
        validation,
        settings,
        health,
        metrics,
    });
    let router = Router::new()
        .route(JWKS_PATH, get(jwks))
        .route(DISCOVERY_PATH, get(discovery))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/readyz/validate", get(readyz_validate))
        .route(METRICS_PATH, get(prometheus_metrics))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn jwks(State(state): State<Arc<HttpState>>, request: HeaderMap) -> Response {
    let keys = state.validation.validator().keys();
    let body = serde_json::to_vec(&JwkSet::of(keys.public_keys())).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &body);
    let etag = format!(
        "\"{}\"",
        digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = format!(
        "public, max-age={}, must-revalidate",
        state.settings.jwks_max_age.as_secs()
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&cache) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, body).into_response()
}

/// OpenID Connect Discovery 1.0 metadata, for verifiers that find the key
/// set through the issuer. Every field the specification requires is
/// present. There is no authorization endpoint: it is empty, as SPIRE's
/// OIDC discovery provider does, since strict parsers (cloud workload
/// identity federation among them) refuse a document without it.
async fn discovery(State(state): State<Arc<HttpState>>) -> Response {
    let base = state.settings.public_url.trim_end_matches('/');
    let algorithms: std::collections::BTreeSet<&str> = ["EdDSA", "ES256"].into();
    let document = serde_json::json!({
        "issuer": state.settings.issuer,
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "tenant", "scope", "client_id"],
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        document.to_string(),
    )
        .into_response()
}

async fn livez() -> Response {
    health_response(true, serde_json::json!({ "status": "live" }))
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let HealthReport { ready, detail, .. } = (state.health)();
    health_response(ready, detail)
}

async fn readyz_validate(State(state): State<Arc<HttpState>>) -> Response {
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
async fn prometheus_metrics(State(state): State<Arc<HttpState>>) -> Response {
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::warn!(%error, "rendering /metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
