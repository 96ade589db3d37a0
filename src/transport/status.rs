//! The one place where domain errors become gRPC statuses.
use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{Error, ErrorKind};

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
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            "internal error".to_owned()
        }
        _ => err.to_string(),
    };
    Status::with_error_details(code, message, details)
}
