//! Who calls an HTTP endpoint that needs a caller (`/oauth2/*`, `/authz`):
//! the same callers and bearer keys as gRPC, presented the ways HTTP
//! clients do. OAuth clients send the caller's name as `client_id` and its
//! bearer key as `client_secret`, by HTTP Basic (`client_secret_basic`) or
//! in the form (`client_secret_post`), RFC 6749 §2.3.1; a resource server
//! may send `authorization: Bearer <key>` (RFC 7662 §2.1). A gateway's
//! forward-auth subrequest carries the *user's* token in `authorization`,
//! so the gateway's own key goes in [`GATEWAY_KEY_HEADER`].

use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

use super::form::Form;
use super::oauth_error::OAuthError;
use super::Peer;
use crate::access::{Denial, Permission};
use crate::transport::access_layer::{AccessControl, HttpCredentials, HttpRefusal};
use crate::verify::caller::Caller;

/// The forward-auth caller's bearer key (NGINX `proxy_set_header`, Traefik
/// `authRequestHeaders`…).
pub const GATEWAY_KEY_HEADER: &str = "x-token-authority-key";

/// Longest credential header accepted (a bearer key is 47 bytes).
const MAX_CREDENTIAL_BYTES: usize = 1024;

/// Credentials found in a request, before they are checked.
#[derive(Default)]
pub struct Presented {
    key: Option<Zeroizing<String>>,
    client_id: Option<String>,
}

impl Presented {
    /// From the `authorization` header (Basic or Bearer) or, without one,
    /// the form's `client_id` and `client_secret`. Using both is refused
    /// (RFC 6749 §2.3: one authentication method per request).
    pub fn of_client(headers: &HeaderMap, form: Option<&Form>) -> Result<Self, OAuthError> {
        let in_form = form.and_then(|f| f.get("client_secret"));
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Self {
                key: in_form.map(|s| Zeroizing::new(s.to_owned())),
                client_id: form.and_then(|f| f.get("client_id")).map(str::to_owned),
            });
        };
        if in_form.is_some() {
            return Err(OAuthError::invalid_request(
                "client credentials are sent both in the authorization header and in the form",
            ));
        }
        let value = value
            .to_str()
            .ok()
            .filter(|v| v.len() <= MAX_CREDENTIAL_BYTES)
            .ok_or_else(|| invalid_client(Denial::CredentialsInvalid))?;
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Self {
                key: Some(Zeroizing::new(rest.to_owned())),
                client_id: None,
            });
        }
        if scheme.eq_ignore_ascii_case("basic") {
            if let Some((id, secret)) = basic(rest) {
                return Ok(Self {
                    key: Some(secret),
                    client_id: Some(id),
                });
            }
        }
        Err(invalid_client(Denial::CredentialsInvalid))
    }

    /// The gateway key of a forward-auth subrequest.
    pub fn of_gateway(headers: &HeaderMap) -> Self {
        Self {
            key: headers
                .get(GATEWAY_KEY_HEADER)
                .filter(|v| v.len() <= MAX_CREDENTIAL_BYTES)
                .and_then(|v| v.to_str().ok())
                .map(|v| Zeroizing::new(v.trim().to_owned())),
            client_id: None,
        }
    }

    /// The caller these credentials name, if it holds one of `any_of`.
    pub fn admit(
        &self,
        access: &AccessControl,
        any_of: &[Permission],
        method: &str,
        peer: &Peer,
    ) -> Result<Caller, HttpRefusal> {
        let credentials = HttpCredentials {
            key: self.key.as_deref().map(String::as_str),
            client_id: self.client_id.as_deref(),
            identities: &peer.identities,
        };
        access
            .admit_http(credentials, any_of, method, peer.addr.map(|p| p.ip()))
            .map(|caller| caller.with_certificate(peer.certificate_thumbprint.clone()))
    }
}

/// `client_id:client_secret` of HTTP Basic, each form-urlencoded first
/// (RFC 6749 §2.3.1).
fn basic(encoded: &str) -> Option<(String, Zeroizing<String>)> {
    let decoded = Zeroizing::new(STANDARD.decode(encoded.trim()).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let plus_as_space = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus_as_space)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((unescape(id)?, Zeroizing::new(unescape(secret)?)))
}

fn invalid_client(denial: Denial) -> OAuthError {
    OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", denial.reason())
        .with_challenge("Basic realm=\"token-authority\"".to_owned())
}

/// The OAuth answer to a refusal (RFC 6749 §5.2): unknown credentials are
/// `invalid_client` with a Basic challenge; a caller without the
/// permission is `unauthorized_client`.
pub fn oauth_refusal(refusal: HttpRefusal) -> OAuthError {
    match refusal {
        HttpRefusal::Denied(Denial::PermissionNotGranted) => OAuthError::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            Denial::PermissionNotGranted.reason(),
        ),
        HttpRefusal::Denied(denial) => invalid_client(denial),
        HttpRefusal::RateLimited(after) => OAuthError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "RATE_LIMITED: too many requests from this caller",
        )
        .with_retry_after(after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_unescaped() {
        let encoded = STANDARD.encode("my%20app:tak_a%2Bb");
        let p =
            Presented::of_client(&with_authorization(&format!("Basic {encoded}")), None).unwrap();
        assert_eq!(p.client_id.as_deref(), Some("my app"));
        assert_eq!(p.key.as_deref().map(String::as_str), Some("tak_a+b"));
    }

    #[test]
    fn bearer_and_form_credentials_are_found() {
        let p = Presented::of_client(&with_authorization("bearer tak_x"), None).unwrap();
        assert_eq!(p.key.as_deref().map(String::as_str), Some("tak_x"));
        assert_eq!(p.client_id, None);
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let form = Form::parse(&h, b"client_id=bff&client_secret=tak_y").unwrap();
        let p = Presented::of_client(&HeaderMap::new(), Some(&form)).unwrap();
        assert_eq!(p.client_id.as_deref(), Some("bff"));
        assert_eq!(p.key.as_deref().map(String::as_str), Some("tak_y"));
        assert!(Presented::of_client(&with_authorization("Bearer tak_x"), Some(&form)).is_err());
    }

    #[test]
    fn malformed_authorization_is_invalid_client() {
        for value in ["Basic !!!", "Basic", "Digest x", "Bearer "] {
            let err = Presented::of_client(&with_authorization(value), None)
                .err()
                .unwrap_or_else(|| panic!("{value} accepted"));
            assert_eq!(err.error, "invalid_client", "{value}");
        }
    }
}
