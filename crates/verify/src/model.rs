//! What a validation asks and answers (no transport types here).
use crate::access_token::AccessClaims;

#[derive(Debug, Clone, Default)]
pub struct ValidateRequest {
    pub access_token: String,
    pub expected_audience: String,
    pub expected_tenant_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedToken {
    pub claims: AccessClaims,
    pub key_id: String,
}
