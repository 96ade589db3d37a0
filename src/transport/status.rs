//! The one place where errors become gRPC statuses: domain errors, and
//! refusals by the access layer. Every status carries a google.rpc.ErrorInfo
//! with a stable reason.
use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::access::Denial;
use crate::verify::{Error, ErrorKind};

/// `google.rpc.ErrorInfo.domain` of every error we send.
pub const ERROR_DOMAIN: &str = "token-authority";

/// How long a client should wait before retrying after STORAGE_UNAVAILABLE.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub fn to_status(err: Error) -> Status {
    let code = match err.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    };
    let mut details = ErrorDetails::with_error_info(err.reason(), ERROR_DOMAIN, HashMap::new());
    let message = match &err {
        Error::InvalidArgument { field, reason } => {
            details.add_bad_request_violation(*field, reason.clone());
            err.to_string()
        }
        Error::Unavailable(source) => {
            tracing::warn!(error = %source, "database unavailable");
            details.set_retry_info(Some(RETRY_AFTER));
            err.to_string()
        }
        Error::StorageTimeout { .. } => {
            tracing::warn!(error = %err, "database too slow; request answered before its deadline");
            details.set_retry_info(Some(RETRY_AFTER));
            err.to_string()
        }
        Error::NotSynced | Error::Stale { .. } => {
            details.set_retry_info(Some(RETRY_AFTER));
            err.to_string()
        }
        Error::RateLimited { retry_after } | Error::SessionLimit { retry_after } => {
            details.set_retry_info(Some(*retry_after));
            err.to_string()
        }
        Error::Internal(detail) | Error::KeyStore(detail) => {
            tracing::error!(%detail, "internal error");
            "internal error".to_owned()
        }
        _ => err.to_string(),
    };
    Status::with_error_details(code, message, details)
}

/// A request refused for its credentials or permissions.
pub fn denied(denial: Denial, method: &str) -> Status {
    let (code, message) = match denial {
        Denial::CredentialsMissing => (
            Code::Unauthenticated,
            "no credentials: send `authorization: Bearer <key>` or a client certificate".to_owned(),
        ),
        Denial::CredentialsInvalid => (
            Code::Unauthenticated,
            "the credentials presented are not those of any caller".to_owned(),
        ),
        Denial::PermissionNotGranted => (
            Code::PermissionDenied,
            format!("this caller may not call {method}"),
        ),
    };
    let metadata = HashMap::from([("method".to_owned(), method.to_owned())]);
    let details = ErrorDetails::with_error_info(denial.reason(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// Too many requests from one caller.
pub fn caller_rate_limited(retry_after: Duration) -> Status {
    to_status(Error::RateLimited { retry_after })
}

/// Request metadata over a limit: INVALID_ARGUMENT naming it.
pub fn invalid_metadata(field: &'static str, reason: String) -> Status {
    to_status(Error::InvalidArgument { field, reason })
}
