//! The gateway decision, shared by Envoy's ext_authz Check and HTTP
//! forward-auth (`/authz`), so that they cannot drift: from the request's
//! `authorization` header and the route's expected audience and tenant to
//! allow (with the token's identity as headers) or deny (with an RFC 6750
//! challenge). The bearer token is validated like Validate.
use crate::verify::caller::Caller;
use crate::verify::model::{ValidateRequest, ValidatedToken};
use crate::verify::validation::TokenValidation;
use crate::verify::{Error, ErrorKind};

use super::access_layer::AccessControl;

/// Headers set on allowed requests (any client-sent value is overwritten).
pub const SUBJECT_HEADER: &str = "x-auth-subject";
pub const TENANT_HEADER: &str = "x-auth-tenant";
pub const SCOPES_HEADER: &str = "x-auth-scopes";
pub const SESSION_HEADER: &str = "x-auth-session-id";

/// What the route expects of the token; empty: anything.
#[derive(Debug, Default)]
pub struct Expected {
    pub audience: String,
    pub tenant: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The identity headers to send upstream, in this order.
    Allow(Vec<(&'static str, String)>),
    Deny(Denied),
}

/// Why a request is denied, in HTTP terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no token, or an invalid, expired or revoked one.
    Unauthorized,
    /// 403: a valid token for another audience or tenant.
    Forbidden,
    /// 503: the validator has no usable key set or revocation state. Never
    /// allowed: a gateway left to fail open might let the request through.
    Unavailable,
}

impl Refusal {
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::Unauthorized => 401,
            Refusal::Forbidden => 403,
            Refusal::Unavailable => 503,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Denied {
    pub refusal: Refusal,
    /// The `WWW-Authenticate` value.
    pub challenge: String,
    /// For the log and gRPC status message; holds no token.
    pub message: String,
}

/// Decides on a request whose `authorization` header is `authorization`
/// (`None`: no such header), for `caller` (the gateway). `presenter` is
/// the x5t#S256 thumbprint of the certificate the gateway says the client
/// presented (`None`: none, and a certificate-bound token is refused).
/// `Err` only for a bug (an internal error is no verdict on the token).
#[allow(clippy::too_many_arguments)]
pub fn decide(
    validation: &dyn TokenValidation,
    access: &AccessControl,
    caller: &Caller,
    method: &str,
    authorization: Option<&str>,
    presenter: Option<&str>,
    expected: &Expected,
    realm: &str,
) -> Result<Decision, Error> {
    let access_token = match bearer_token(authorization) {
        Ok(Some(token)) => token,
        Ok(None) => return Ok(Decision::Deny(challenge(realm))),
        Err(e) => return Ok(Decision::Deny(deny(&e, realm))),
    };
    let outcome = validation.validate(
        caller,
        &ValidateRequest {
            access_token: access_token.to_owned(),
            expected_audience: expected.audience.clone(),
            expected_tenant_id: expected.tenant.clone(),
            presenter_certificate_thumbprint: presenter.unwrap_or_default().to_owned(),
            binding_checked_by_caller: false,
        },
    );
    match outcome {
        Ok(token) => Ok(Decision::Allow(identity(token))),
        Err(e) if e.kind() == ErrorKind::Internal => Err(e),
        Err(e) => {
            access.refused_by_domain(caller, method, &e);
            Ok(Decision::Deny(deny(&e, realm)))
        }
    }
}

fn identity(token: ValidatedToken) -> Vec<(&'static str, String)> {
    let c = token.claims;
    vec![
        (SUBJECT_HEADER, c.sub),
        (TENANT_HEADER, c.tenant),
        (SCOPES_HEADER, c.scope),
        (SESSION_HEADER, c.sid),
    ]
}

/// A request without bearer credentials: a bare challenge, no error code
/// (RFC 6750 §3.1).
fn challenge(realm: &str) -> Denied {
    Denied {
        refusal: Refusal::Unauthorized,
        challenge: format!("Bearer realm=\"{realm}\""),
        message: "no bearer token".into(),
    }
}

/// The denial for a validation error.
pub fn deny(error: &Error, realm: &str) -> Denied {
    if error.kind() == ErrorKind::Unavailable {
        return Denied {
            refusal: Refusal::Unavailable,
            challenge: format!("Bearer realm=\"{realm}\""),
            message: error.to_string(),
        };
    }
    let (refusal, oauth) = match error.kind() {
        ErrorKind::PermissionDenied => (Refusal::Forbidden, "insufficient_scope"),
        ErrorKind::InvalidArgument => (Refusal::Unauthorized, "invalid_request"),
        _ => (Refusal::Unauthorized, "invalid_token"),
    };
    Denied {
        refusal,
        challenge: format!(
            "Bearer realm=\"{realm}\", error=\"{oauth}\", error_description=\"{}\"",
            error.reason()
        ),
        message: error.to_string(),
    }
}

/// The token of an `authorization: Bearer …` value (any case of scheme);
/// `None` for another scheme; `Bearer` without a token is INVALID_ARGUMENT
/// naming `authorization`.
fn bearer_token(authorization: Option<&str>) -> Result<Option<&str>, Error> {
    let Some(value) = authorization.map(str::trim) else {
        return Ok(None);
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Err(Error::invalid("authorization", "Bearer without a token")),
        token => Ok(Some(token)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_found_in_any_case() {
        fn token(v: &str) -> Option<&str> {
            bearer_token(Some(v)).unwrap()
        }
        assert_eq!(token("Bearer abc"), Some("abc"));
        assert_eq!(token("bearer  abc "), Some("abc"));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(bearer_token(None).unwrap(), None);
        assert!(bearer_token(Some("Bearer ")).is_err());
        assert!(bearer_token(Some("Bearer")).is_err());
    }

    #[test]
    fn denials_map_kinds_to_statuses() {
        let d = deny(&Error::TokenExpired, "r");
        assert_eq!(d.refusal, Refusal::Unauthorized);
        assert_eq!(
            d.challenge,
            "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"TOKEN_EXPIRED\""
        );
        assert_eq!(
            deny(&Error::AudienceMismatch, "r").refusal,
            Refusal::Forbidden
        );
        assert_eq!(deny(&Error::NotSynced, "r").refusal, Refusal::Unavailable);
        assert_eq!(deny(&Error::NotSynced, "r").challenge, "Bearer realm=\"r\"");
    }
}
