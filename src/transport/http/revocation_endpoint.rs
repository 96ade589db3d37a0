//! OAuth 2.0 token revocation (RFC 7009), `POST /oauth2/revoke`: a refresh
//! token revokes its session, as gRPC's Revoke does; so does a valid access
//! token (§2.1 lets the server revoke the refresh token along with it:
//! otherwise a client logging out would leave its session alive). A token
//! that is invalid, expired, already revoked, or not the caller's tenant's
//! is answered 200 like any other (§2.2): the client's goal is met, and the
//! answer says nothing about tokens the caller may not see.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::caller::{oauth_refusal, Presented};
use super::form::Form;
use super::oauth_error::{no_store_json, OAuthError};
use super::oauth_grant_errors::grant_error;
use super::{HttpState, Peer};
use crate::access::Permission;
use crate::domain::model::{RevokeRequest, RevokeTarget};
use crate::verify::model::ValidateRequest;
use crate::verify::{Error, ErrorKind};

pub const REVOCATION_PATH: &str = "/oauth2/revoke";

pub async fn revoke(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke_token(&state, &peer, &headers, &body).await {
        Ok(()) => (StatusCode::OK, no_store_json(), "{}").into_response(),
        Err(error) => error.into_response(),
    }
}

async fn revoke_token(
    state: &HttpState,
    peer: &Peer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), OAuthError> {
    let Some(authority) = state.backend.authority.as_deref() else {
        return Err(OAuthError::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "this is a validation sidecar: revoke at the token authority",
        ));
    };
    let form = Form::parse(headers, body)?;
    let caller = Presented::of_client(headers, Some(&form))?
        .admit(&state.backend.access, &[Permission::Revoke], "revoke", peer)
        .map_err(oauth_refusal)?;
    let token = form.required("token")?;
    let reason = "revoked through /oauth2/revoke".to_owned();
    // The hint (§2.1) only saves a lookup, and the two kinds cannot be
    // mistaken for each other: a JWT has two dots, a refresh token none.
    let request = if token.split('.').count() == 3 {
        let validated = state.backend.validation.validate(
            &caller,
            &ValidateRequest {
                access_token: token.to_owned(),
                // Whoever holds the token may end it (RFC 7009).
                binding_checked_by_caller: true,
                ..Default::default()
            },
        );
        match validated {
            Ok(access) => RevokeRequest {
                tenant_id: access.claims.tenant,
                target: Some(RevokeTarget::Session(access.claims.sid)),
                reason,
            },
            Err(e) => return settled(e),
        }
    } else {
        RevokeRequest {
            tenant_id: String::new(),
            target: Some(RevokeTarget::RefreshToken(token.to_owned())),
            reason,
        }
    };
    match authority.revoke(&caller, request).await {
        Ok(_) => Ok(()),
        Err(e) => settled(e),
    }
}

/// Whether a failure still means "this token is no longer usable" (200)
/// or the revocation may not have happened (an error to retry on).
fn settled(error: Error) -> Result<(), OAuthError> {
    match error.kind() {
        ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::ResourceExhausted => {
            Err(grant_error(&error))
        }
        _ => Ok(()),
    }
}
