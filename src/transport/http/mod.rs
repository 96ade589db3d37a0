//! The HTTP listener.
//! - Public, read-only: the key set (`/.well-known/jwks.json`), the OpenID
//!   discovery document, health (`/livez`, `/readyz`, `/readyz/validate`,
//!   and `/healthz`, an alias of `/readyz`) and `/metrics` (Prometheus).
//! - For callers (the same callers, keys and permissions as gRPC, see
//!   `caller`): the OAuth 2.0 endpoints and forward-auth for gateways. They
//!   carry tokens and keys, so they are served only where those cannot be
//!   read on the way: on a loopback listener, over TLS (`http.tls`, where
//!   client certificates identify callers too), or where the operator says
//!   the network is protected (`http.plaintext_credentials`).
//!   - `POST /oauth2/introspect` (`introspect`): RFC 7662, a form with
//!     `token`, for a caller with `Introspect` or `Validate`; 200
//!     `{"active":true,…}` or exactly `{"active":false}`, 503 while the
//!     validator is not ready, RFC 6749 §5.2 errors otherwise.
//!   - `/authz` (`forward_auth`), any method: the Envoy Check decision for
//!     NGINX/Traefik/Caddy subrequests; the gateway's key in
//!     `x-token-authority-key`, the route's expectations in the query
//!     (`?audience=…&tenant=…`); 200 with `X-Auth-*` headers, 401/403 with
//!     a Bearer challenge, 5xx for anything that is no verdict on the token.
//!   - `POST /oauth2/token` (`token_endpoint`): the refresh_token grant and
//!     token exchange; `POST /oauth2/revoke` (`revocation_endpoint`): RFC
//!     7009. Only on the authority, not a sidecar. See
//!     docs/oauth-endpoints.md.
mod caller;
mod form;
mod forward_auth;
mod introspect;
mod oauth_error;
mod oauth_grant_errors;
mod probes;
mod request_metrics;
mod revocation_endpoint;
mod server_tls;
mod token_endpoint;
mod token_exchange_grant;
mod well_known;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::middleware;
use axum::routing::{any, get, post};
use axum::serve::IncomingStream;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::access_layer::AccessControl;
use super::connections::{HttpListener, TlsHttpListener};
use super::health::HealthProbe;
use crate::access::{self, SanIdentity};
use crate::config::Config;
use crate::domain::Authority;
use crate::telemetry::{Metrics, PrometheusMetrics};
use crate::verify::binding::thumbprint_of_der;
use crate::verify::validation::TokenValidation;

pub use caller::GATEWAY_KEY_HEADER;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const METRICS_PATH: &str = "/metrics";
pub const OAUTH_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const INTROSPECTION_PATH: &str = "/oauth2/introspect";
pub const FORWARD_AUTH_PATH: &str = "/authz";

pub struct HttpSettings {
    pub issuer: String,
    /// Base URL of this listener as clients reach it, for `jwks_uri`.
    pub public_url: String,
    pub jwks_max_age: Duration,
    /// Which endpoints for callers are served, for the metadata documents.
    pub served: Served,
    /// Where a trusted gateway passes the presenter's client certificate
    /// (`http.client_certificate_header`).
    pub client_certificate_header: Option<HeaderName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Introspection and forward-auth (any validator).
    pub validation: bool,
    /// The token and revocation endpoints (the authority, not a sidecar).
    pub sessions: bool,
}

/// What the endpoints answer from.
pub struct HttpBackend {
    pub validation: Arc<dyn TokenValidation>,
    /// `None` in a validation sidecar: no refresh, revocation or exchange.
    pub authority: Option<Arc<Authority>>,
    pub access: Arc<AccessControl>,
    pub metrics: Arc<Metrics>,
}

struct HttpState {
    backend: HttpBackend,
    settings: HttpSettings,
    health: HealthProbe,
    metrics: PrometheusMetrics,
}

/// Starts the HTTP listener in a task, answering from `backend`, with the
/// discovery document for `config` and `health` on the health paths.
pub fn spawn(
    backend: HttpBackend,
    config: &Config,
    health: HealthProbe,
    metrics: PrometheusMetrics,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
    let local = listener.local_addr()?;
    let tls = config.http.tls;
    let public_url = match &config.http.public_url {
        Some(url) => url.clone(),
        None if tls => format!("https://{local}"),
        None => format!("http://{local}"),
    };
    let with_callers = tls || local.ip().is_loopback() || config.http.plaintext_credentials;
    let client_certificate_header = config
        .http
        .client_certificate_header
        .as_deref()
        .map(|name| {
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("http.client_certificate_header: {name:?} is not a header name"),
                )
            })
        })
        .transpose()?;
    let settings = HttpSettings {
        issuer: config.tokens.issuer.clone(),
        public_url,
        jwks_max_age: config.http.jwks_max_age,
        served: Served {
            validation: with_callers,
            sessions: with_callers && backend.authority.is_some(),
        },
        client_certificate_header,
    };
    if !with_callers {
        tracing::info!(address = %local, "HTTP listener off loopback: the OAuth and forward-auth endpoints are off, since tokens and keys would cross the network in clear text (set http.tls, or http.plaintext_credentials when the network is protected, e.g. by a service mesh)");
    }
    let state = Arc::new(HttpState {
        backend,
        settings,
        health,
        metrics,
    });
    if tls {
        let server_config = server_tls::server_config(&config.tls)?;
        let listener = TlsHttpListener::new(
            listener,
            &config.connections,
            server_config,
            config.tls.handshake_timeout,
        )?;
        return Ok(tokio::spawn(serve(state, listener, shutdown)));
    }
    let listener = HttpListener::new(listener, &config.connections)?;
    Ok(tokio::spawn(serve(state, listener, shutdown)))
}

/// Waits for a listener started by `spawn`, if any.
pub async fn finished(task: Option<JoinHandle<std::io::Result<()>>>) -> std::io::Result<()> {
    match task {
        Some(task) => task.await.unwrap_or(Ok(())),
        None => Ok(()),
    }
}

async fn serve<L>(
    state: Arc<HttpState>,
    listener: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = Option<SocketAddr>>,
    for<'a> Peer: Connected<IncomingStream<'a, L>>,
{
    let mut router = Router::new()
        .route(JWKS_PATH, get(well_known::jwks))
        .route(DISCOVERY_PATH, get(well_known::discovery))
        .route(OAUTH_METADATA_PATH, get(well_known::oauth_metadata))
        .route("/livez", get(probes::livez))
        .route("/readyz", get(probes::readyz))
        .route("/healthz", get(probes::readyz))
        .route("/readyz/validate", get(probes::readyz_validate))
        .route(METRICS_PATH, get(probes::prometheus_metrics));
    let served = state.settings.served;
    if served.validation {
        router = router.merge(for_callers(served));
    }
    let metrics = state.backend.metrics.clone();
    let app = router
        .route_layer(middleware::from_fn_with_state(
            metrics,
            request_metrics::record,
        ))
        .with_state(state)
        .into_make_service_with_connect_info::<Peer>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The client: its address, for rate limits and the refusal audit, and
/// over TLS the identities (SANs) and x5t#S256 thumbprint of the
/// certificate it presented (the thumbprint: for bound refresh tokens).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
    pub identities: Arc<[SanIdentity]>,
    pub certificate_thumbprint: Option<Arc<str>>,
}

impl Connected<IncomingStream<'_, HttpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            identities: Arc::new([]),
            certificate_thumbprint: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsHttpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsHttpListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        let leaf = session.peer_certificates().and_then(|chain| chain.first());
        let identities = leaf
            .map(|leaf| access::identities(leaf.as_ref()))
            .unwrap_or_default();
        Peer {
            addr: *stream.remote_addr(),
            identities: identities.into(),
            certificate_thumbprint: leaf.map(|leaf| Arc::from(thumbprint_of_der(leaf.as_ref()))),
        }
    }
}

/// The endpoints that need a caller (see `caller`).
fn for_callers(served: Served) -> Router<Arc<HttpState>> {
    let mut router = Router::new()
        .route(INTROSPECTION_PATH, post(introspect::introspect))
        .route(FORWARD_AUTH_PATH, any(forward_auth::authz));
    if served.sessions {
        router = router
            .route(token_endpoint::TOKEN_PATH, post(token_endpoint::token))
            .route(
                revocation_endpoint::REVOCATION_PATH,
                post(revocation_endpoint::revoke),
            );
    }
    router.layer(DefaultBodyLimit::max(form::MAX_FORM_BYTES))
}
