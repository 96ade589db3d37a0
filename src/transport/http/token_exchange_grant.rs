//! The token-exchange grant of the token endpoint (RFC 8693 §2), gRPC's
//! Exchange over HTTP: the subject token is one of our access tokens, the
//! actor is the authenticated caller (no `actor_token`), one `audience`.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::form::Form;
use super::oauth_error::{no_store_json, OAuthError};
use super::oauth_grant_errors::grant_error;
use crate::domain::model::ExchangeRequest;
use crate::domain::Authority;
use crate::transport::convert::ACCESS_TOKEN_TYPE;
use crate::verify::caller::Caller;
use crate::verify::{Error, ErrorKind};

pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Our access tokens are JWTs: either type names them (RFC 8693 §3).
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

pub async fn exchange_grant(
    authority: &Authority,
    caller: &Caller,
    form: &Form,
) -> Result<Response, OAuthError> {
    let subject_token = form.required("subject_token")?;
    let subject_type = form.required("subject_token_type")?;
    if subject_type != ACCESS_TOKEN_TYPE && subject_type != JWT_TYPE {
        return Err(OAuthError::invalid_request(format!(
            "subject_token_type must be {ACCESS_TOKEN_TYPE} (or {JWT_TYPE})"
        )));
    }
    if let Some(wanted) = form.get("requested_token_type") {
        if wanted != ACCESS_TOKEN_TYPE && wanted != JWT_TYPE {
            return Err(OAuthError::invalid_request(format!(
                "only {ACCESS_TOKEN_TYPE} can be issued"
            )));
        }
    }
    if form.get("actor_token").is_some() {
        return Err(OAuthError::invalid_request(
            "actor_token is not supported: the actor is the authenticated client",
        ));
    }
    if form.get("resource").is_some() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "resource is not supported: name the target with audience",
        ));
    }
    let request = ExchangeRequest {
        subject_token: subject_token.to_owned(),
        audience: form.required("audience")?.to_owned(),
        scopes: form
            .get("scope")
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default(),
        requested_lifetime: None,
    };
    let now = authority.now();
    let token = authority
        .exchange(caller, request)
        .await
        .map_err(|e| exchange_error(&e))?;
    let body = serde_json::json!({
        "access_token": token.access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": (token.expires_at - now).max(0) / 1000,
        "scope": token.scopes.join(" "),
    });
    Ok((StatusCode::OK, no_store_json(), body.to_string()).into_response())
}

/// RFC 8693 §2.2.2: a bad subject token is `invalid_request`, scopes it
/// does not hold `invalid_scope`, a target outside the caller's policy
/// `invalid_target`; the rest as the other grants.
fn exchange_error(error: &Error) -> OAuthError {
    let described = |code| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{}: {error}", error.reason()),
        )
    };
    match error {
        Error::ScopeNotHeld(_) => described("invalid_scope"),
        Error::ExchangeNotPermitted(_) => described("invalid_target"),
        _ if error.kind() == ErrorKind::Unauthenticated => described("invalid_request"),
        _ => grant_error(error),
    }
}
