//! What a validation asks and answers (no transport types here).
use crate::access_token::AccessClaims;

#[derive(Debug, Clone, Default)]
pub struct ValidateRequest {
    pub access_token: String,
    pub expected_audience: String,
    pub expected_tenant_id: String,
    /// The x5t#S256 thumbprint of the certificate the token's presenter
    /// showed; empty: none. A certificate-bound token needs its own.
    pub presenter_certificate_thumbprint: String,
    /// The caller compares the presenter's certificate with the token's
    /// `cnf` itself (introspection, RFC 8705 §3.2): a bound token is not
    /// refused for want of `presenter_certificate_thumbprint`.
    pub binding_checked_by_caller: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedToken {
    pub claims: AccessClaims,
    pub key_id: String,
}
