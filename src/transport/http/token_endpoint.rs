//! The OAuth 2.0 token endpoint, `POST /oauth2/token`, for HTTP clients of
//! sessions (a backend-for-frontend, a mobile app's backend). The
//! `refresh_token` grant (RFC 6749 §6) is gRPC's Refresh exactly: the token
//! rotates in one write, a replay revokes the session (`invalid_grant`,
//! `TOKEN_REUSED`), a retry within the retry window gets the same new token.
//! `urn:ietf:params:oauth:grant-type:token-exchange` is gRPC's Exchange
//! (see `token_exchange_grant`).
//! The caller authenticates as an OAuth client: `client_id` is its name,
//! `client_secret` its bearer key.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::caller::{oauth_refusal, Presented};
use super::form::Form;
use super::oauth_error::{no_store_json, OAuthError};
use super::oauth_grant_errors::grant_error;
use super::token_exchange_grant::{exchange_grant, TOKEN_EXCHANGE_GRANT};
use super::{HttpState, Peer};
use crate::access::Permission;
use crate::domain::model::{Device, RefreshRequest, TokenPair};
use crate::domain::Authority;
use crate::telemetry::Metrics;
use crate::verify::caller::Caller;
use crate::verify::clock::Millis;

pub const TOKEN_PATH: &str = "/oauth2/token";
pub const REFRESH_TOKEN_GRANT: &str = "refresh_token";
/// What `grant_type` may be, for the metadata document.
pub const GRANT_TYPES: &[&str] = &[REFRESH_TOKEN_GRANT, TOKEN_EXCHANGE_GRANT];

pub async fn token(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(authority) = state.backend.authority.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = async {
        let form = Form::parse(&headers, &body)?;
        let presented = Presented::of_client(&headers, Some(&form))?;
        match form.required("grant_type")? {
            REFRESH_TOKEN_GRANT => {
                let caller = presented
                    .admit(
                        &state.backend.access,
                        &[Permission::Refresh],
                        "token",
                        &peer,
                    )
                    .map_err(oauth_refusal)?;
                refresh_grant(authority, &state.backend.metrics, &caller, &form).await
            }
            TOKEN_EXCHANGE_GRANT => {
                let caller = presented
                    .admit(
                        &state.backend.access,
                        &[Permission::Exchange],
                        "token",
                        &peer,
                    )
                    .map_err(oauth_refusal)?;
                exchange_grant(authority, &caller, &form).await
            }
            other => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "grant_type {} is not supported (supported: {})",
                    other.chars().take(64).collect::<String>(),
                    GRANT_TYPES.join(", ")
                ),
            )),
        }
    };
    match answer.await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// RFC 6749 §6. A `scope` parameter is not needed: the new access token
/// has the session's scopes, reported in `scope` (§5.1); narrower tokens
/// come from token exchange.
async fn refresh_grant(
    authority: &Authority,
    metrics: &Metrics,
    caller: &Caller,
    form: &Form,
) -> Result<Response, OAuthError> {
    // The caller's own User-Agent is not the user's device: the device
    // fields (extension parameters, like gRPC's) are only the ones sent.
    let device = Device {
        name: form.get("device_name").unwrap_or_default().to_owned(),
        user_agent: form.get("device_user_agent").unwrap_or_default().to_owned(),
        ip: form.get("device_ip").unwrap_or_default().to_owned(),
    };
    let request = RefreshRequest {
        refresh_token: form.required("refresh_token")?.to_owned(),
        device,
        // A bound session keeps its binding; a refresh token bound to a
        // certificate needs this connection to present it (`caller`).
        binding: None,
    };
    let refreshed = authority.refresh(caller, request).await;
    metrics.refresh_outcome(refreshed.as_ref().map_or_else(|e| e.reason(), |_| "OK"));
    let pair = refreshed.map_err(|e| grant_error(&e))?;
    Ok(token_response(&pair, authority.now()))
}

/// RFC 6749 §5.1, with the lifetime of the refresh token and the session
/// id besides.
fn token_response(pair: &TokenPair, now: Millis) -> Response {
    let seconds_left = |at: Millis| (at - now).max(0) / 1000;
    let body = serde_json::json!({
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": seconds_left(pair.access_token_expires_at),
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": seconds_left(pair.refresh_token_expires_at),
        "scope": pair.scope,
        "session_id": pair.session_id,
    });
    (StatusCode::OK, no_store_json(), body.to_string()).into_response()
}
