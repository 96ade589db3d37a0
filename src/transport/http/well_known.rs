//! Public documents of the issuer: the key set for standard JWT libraries
//! and Envoy's `jwt_authn`, and the OpenID discovery document.
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::revocation_endpoint::REVOCATION_PATH;
use super::token_endpoint::{GRANT_TYPES, TOKEN_PATH};
use super::{HttpState, INTROSPECTION_PATH, JWKS_PATH};
use crate::verify::keys::jwk::JwkSet;

pub async fn jwks(State(state): State<Arc<HttpState>>, request: HeaderMap) -> Response {
    let keys = state.backend.validation.validator().keys();
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
pub async fn discovery(State(state): State<Arc<HttpState>>) -> Response {
    let base = state.settings.public_url.trim_end_matches('/');
    let algorithms: std::collections::BTreeSet<&str> = ["EdDSA", "ES256"].into();
    let document = serde_json::json!({
        "issuer": state.settings.issuer,
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "tenant", "scope", "client_id", "cnf"],
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

/// OAuth 2.0 authorization server metadata (RFC 8414), for clients that
/// configure themselves from the issuer (Authlib, oauth2 client crates…):
/// what this authority serves over HTTP. There is no authorization
/// endpoint: sessions start with Issue, from a trusted login service.
/// Served by the authority only: a sidecar has no token endpoint.
pub async fn oauth_metadata(State(state): State<Arc<HttpState>>) -> Response {
    let served = state.settings.served;
    if !served.sessions {
        return StatusCode::NOT_FOUND.into_response();
    }
    let base = state.settings.public_url.trim_end_matches('/');
    let client_auth = ["client_secret_basic", "client_secret_post"];
    let document = serde_json::json!({
        "issuer": state.settings.issuer,
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "token_endpoint_auth_methods_supported": client_auth,
        // RFC 8705 §3.3: access tokens can be bound to a client
        // certificate (TokenBinding on Issue).
        "tls_client_certificate_bound_access_tokens": true,
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],
        "revocation_endpoint": format!("{base}{REVOCATION_PATH}"),
        "revocation_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint": format!("{base}{INTROSPECTION_PATH}"),
        "introspection_endpoint_auth_methods_supported": client_auth,
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
