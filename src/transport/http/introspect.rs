//! RFC 7662 token introspection: `POST /oauth2/introspect`, a form with
//! `token` (and `token_type_hint`, accepted and ignored, §2.1), for a
//! caller holding `Introspect` or `Validate`. Answered from memory like
//! Validate: same validator, same revocation set, the caller's tenants.
//!
//! Any token that would not validate is `{"active":false}` and nothing
//! more (§2.2): invalid, expired, revoked, wrongly signed, garbage, or of a
//! tenant the caller may not act on, so that nothing is learnt about it.
//! Refresh tokens are not introspected from memory (only the database
//! knows them): they, and anything else that is not an access JWT, are
//! inactive too.
//!
//! A certificate-bound token is active with its `cnf` (RFC 8705 §3.2): the
//! caller compares it with the certificate it saw, unless a trusted
//! gateway sent the presenter's in `http.client_certificate_header`, which
//! is then compared here.
//!
//! A validator without a key set or revocation state yet answers 503
//! `temporarily_unavailable`, not `active:false`: a gateway takes
//! `active:false` as "this token is bad" and sends the user to log in
//! again, or drops a cached session, while the token may be fine; a 5xx
//! is retried or fails closed without a verdict.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::caller::{oauth_refusal, Presented};
use super::form::Form;
use super::oauth_error::{no_store_json, OAuthError};
use super::{HttpState, Peer};
use crate::access::Permission;
use crate::transport::presenter_certificate;
use crate::verify::access_token::AccessClaims;
use crate::verify::model::ValidateRequest;
use crate::verify::ErrorKind;

const METHOD: &str = "Introspect";

pub async fn introspect(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match answer(&state, &peer, &headers, &body) {
        Ok(answer) => (StatusCode::OK, no_store_json(), answer.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

fn answer(
    state: &HttpState,
    peer: &Peer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let form = Form::parse(headers, body)?;
    let access = &state.backend.access;
    let caller = Presented::of_client(headers, Some(&form))?
        .admit(
            access,
            &[Permission::Introspect, Permission::Validate],
            METHOD,
            peer,
        )
        .map_err(oauth_refusal)?;
    let presenter = presenter_certificate::from_header(
        headers,
        state.settings.client_certificate_header.as_ref(),
    )
    .map_err(|e| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
    // Without a presenter's certificate the caller compares the token's
    // `cnf` with it (RFC 8705 §3.2); with one, a mismatch is inactive.
    let request = ValidateRequest {
        access_token: form.required("token")?.to_owned(),
        presenter_certificate_thumbprint: presenter.unwrap_or_default(),
        binding_checked_by_caller: true,
        ..Default::default()
    };
    match state.backend.validation.validate(&caller, &request) {
        Ok(token) => Ok(active(&token.claims)),
        Err(e) if e.kind() == ErrorKind::Unavailable => Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            e.reason(),
        )),
        Err(e) if e.kind() == ErrorKind::Internal => {
            tracing::error!(error = %e, "introspection failed");
            Err(OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.reason(),
            ))
        }
        Err(e) => {
            access.refused_by_domain(&caller, METHOD, &e);
            Ok(json!({ "active": false }))
        }
    }
}

/// The answer for a token that validates (RFC 7662 §2.2, with our
/// `tenant` and `sid`).
fn active(c: &AccessClaims) -> Value {
    let mut answer = json!({
        "active": true,
        "token_type": "Bearer",
        "sub": c.sub,
        "aud": c.aud,
        "scope": c.scope,
        "exp": c.exp,
        "iat": c.iat,
        "nbf": c.nbf,
        "iss": c.iss,
        "jti": c.jti,
        "sid": c.sid,
        "tenant": c.tenant,
    });
    // RFC 7662 §2.2 `client_id`, and the delegation chain of an exchanged
    // token (RFC 8693 §4.1 `act`), when the token carries them.
    if !c.client_id.is_empty() {
        answer["client_id"] = json!(c.client_id);
    }
    if let Some(act) = &c.act {
        answer["act"] = json!(act);
    }
    if let Some(cnf) = &c.cnf {
        answer["cnf"] = json!(cnf);
    }
    answer
}
