//! What can go wrong with a token or session request. The transport maps
//! each variant to a gRPC status once (`transport::status`).

/// Failures of the token and session domain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("token is malformed or was not issued by this authority")]
    TokenInvalid,
    #[error("token was signed by a withdrawn key; refresh the session for a new one")]
    KeyWithdrawn,
    #[error("no signing key has this id")]
    KeyNotFound,
    #[error("token has expired")]
    TokenExpired,
    #[error("token is not valid yet")]
    TokenNotYetValid,
    #[error("token was issued for another audience")]
    AudienceMismatch,
    #[error("token belongs to another tenant")]
    TenantMismatch,
    #[error("the caller may not act on this tenant")]
    TenantNotPermitted,
    #[error("token exchange not permitted: {0}")]
    ExchangeNotPermitted(&'static str),
    #[error("the subject token does not hold the scopes {}", .0.join(" "))]
    ScopeNotHeld(Vec<String>),
    #[error("too many requests; retry in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: std::time::Duration },
    #[error("refresh token was already used; the session has been revoked")]
    TokenReused,
    #[error("session has been revoked")]
    SessionRevoked,
    #[error("session has expired")]
    SessionExpired,
    #[error("session not found")]
    SessionNotFound,
    #[error("token is bound to a certificate the presenter did not show")]
    TokenBindingMismatch,
    #[error("the tenant requires certificate-bound tokens: request a binding")]
    BindingRequired,
    #[error("the tenant requires certificate-bound tokens; this one is a bearer token")]
    UnboundToken,
    #[error("storage is unavailable")]
    Unavailable(#[source] StorageError),
    #[error("storage did not answer within {} ms", budget.as_millis())]
    StorageTimeout { budget: std::time::Duration },
    #[error("the subject has its maximum of sessions, all in use; retry in {} s", retry_after.as_secs())]
    SessionLimit { retry_after: std::time::Duration },
    #[error("not in step with the token authority yet (no key set received)")]
    NotSynced,
    #[error("no word from the token authority for {} s: validation state too old to trust", stale_for.as_secs())]
    Stale { stale_for: std::time::Duration },
    #[error("key store: {0}")]
    KeyStore(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Kind of an error for the caller: decides the gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    Internal,
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// Machine-readable reason, stable across releases (google.rpc.ErrorInfo.reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::TokenInvalid => "TOKEN_INVALID",
            Error::KeyWithdrawn => "KEY_WITHDRAWN",
            Error::KeyNotFound => "KEY_NOT_FOUND",
            Error::TokenExpired => "TOKEN_EXPIRED",
            Error::TokenNotYetValid => "TOKEN_NOT_YET_VALID",
            Error::AudienceMismatch => "AUDIENCE_MISMATCH",
            Error::TenantMismatch => "TENANT_MISMATCH",
            Error::TenantNotPermitted => "TENANT_NOT_PERMITTED",
            Error::ExchangeNotPermitted(_) => "EXCHANGE_NOT_PERMITTED",
            Error::ScopeNotHeld(_) => "SCOPE_NOT_HELD",
            Error::RateLimited { .. } => "RATE_LIMITED",
            Error::TokenReused => "TOKEN_REUSED",
            Error::SessionRevoked => "SESSION_REVOKED",
            Error::SessionExpired => "SESSION_EXPIRED",
            Error::SessionNotFound => "SESSION_NOT_FOUND",
            Error::TokenBindingMismatch => "TOKEN_BINDING_MISMATCH",
            Error::BindingRequired | Error::UnboundToken => "TOKEN_BINDING_REQUIRED",
            Error::Unavailable(_) | Error::StorageTimeout { .. } => "STORAGE_UNAVAILABLE",
            Error::SessionLimit { .. } => "SESSION_LIMIT_REACHED",
            Error::NotSynced => "NOT_SYNCED",
            Error::Stale { .. } => "VALIDATION_STATE_STALE",
            Error::KeyStore(_) | Error::Internal(_) => "INTERNAL",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::TokenInvalid
            | Error::KeyWithdrawn
            | Error::TokenExpired
            | Error::TokenNotYetValid
            | Error::TokenReused
            | Error::TokenBindingMismatch
            | Error::UnboundToken
            | Error::SessionRevoked
            | Error::SessionExpired => ErrorKind::Unauthenticated,
            Error::AudienceMismatch
            | Error::TenantMismatch
            | Error::TenantNotPermitted
            | Error::ExchangeNotPermitted(_)
            | Error::ScopeNotHeld(_) => ErrorKind::PermissionDenied,
            Error::RateLimited { .. } | Error::SessionLimit { .. } => ErrorKind::ResourceExhausted,
            Error::SessionNotFound | Error::KeyNotFound => ErrorKind::NotFound,
            Error::BindingRequired => ErrorKind::FailedPrecondition,
            Error::Unavailable(_)
            | Error::StorageTimeout { .. }
            | Error::NotSynced
            | Error::Stale { .. } => ErrorKind::Unavailable,
            Error::KeyStore(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// A failure of the store, as the rules see it: either "try again later"
/// (the database is down, busy or too slow) or a bug or bad data. The
/// storage crate decides which; the cause is kept for the log.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct StorageError {
    unavailable: bool,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            unavailable: true,
            source: source.into(),
        }
    }

    pub fn failed(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            unavailable: false,
            source: source.into(),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        if e.is_unavailable() {
            Error::Unavailable(e)
        } else {
            Error::Internal(e.to_string())
        }
    }
}
