//! Domain errors as OAuth 2.0 errors (RFC 6749 §5.2), with our reason code
//! first in `error_description`: the same reasons a gRPC client reads from
//! ErrorInfo.
use std::time::Duration;

use axum::http::StatusCode;

use super::oauth_error::OAuthError;
use crate::verify::{Error, ErrorKind};

/// How long a client should wait after a storage outage (as over gRPC).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The answer of the token endpoint to a failed grant.
pub fn grant_error(error: &Error) -> OAuthError {
    let description = format!("{}: {error}", error.reason());
    match (error.kind(), error) {
        (_, Error::RateLimited { retry_after } | Error::SessionLimit { retry_after }) => {
            OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                description,
            )
            .with_retry_after(*retry_after)
        }
        (ErrorKind::InvalidArgument, _) => {
            OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
        }
        (ErrorKind::Unavailable, _) => OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        )
        .with_retry_after(RETRY_AFTER),
        (ErrorKind::Internal, _) => {
            tracing::error!(%error, "internal error");
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "INTERNAL: internal error",
            )
        }
        // The grant (token) is not good, or not this client's to use.
        _ => OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lead_the_description() {
        let e = grant_error(&Error::TokenReused);
        assert_eq!(
            (e.status, e.error),
            (StatusCode::BAD_REQUEST, "invalid_grant")
        );
        assert!(
            e.description.starts_with("TOKEN_REUSED: "),
            "{}",
            e.description
        );
        let e = grant_error(&Error::Unavailable(
            crate::verify::error::StorageError::unavailable("db down"),
        ));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(RETRY_AFTER));
        let e = grant_error(&Error::Internal("secret detail".into()));
        assert!(!e.description.contains("secret"));
    }
}
