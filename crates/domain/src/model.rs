//! Plain request and result types of the domain (no transport types here).
use serde_json::{Map, Value};

use token_authority_verify::clock::Millis;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub user_agent: String,
    pub ip: String,
}

#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    pub tenant_id: String,
    pub subject: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub device: Device,
    pub extra_claims: Map<String, Value>,
    pub binding: Option<TokenBinding>,
}

/// What the access tokens are bound to (RFC 8705): a certificate named by
/// its thumbprint, or the one of the calling connection (exactly one), and
/// whether the refresh token is bound to it too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBinding {
    /// x5t#S256 of the certificate of the service that will present the
    /// tokens.
    pub certificate_thumbprint: String,
    pub bind_to_caller_certificate: bool,
    pub bind_refresh_token: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RefreshRequest {
    pub refresh_token: String,
    /// Fields left empty keep their stored value.
    pub device: Device,
    /// The certificate the new access token is bound to: must be the
    /// session's if it is bound; binds only this token if it is not.
    pub binding: Option<TokenBinding>,
}

#[derive(Debug, Clone)]
pub enum RevokeTarget {
    RefreshToken(String),
    Session(String),
    AllSessions { subject: String },
}

#[derive(Debug, Clone)]
pub struct RevokeRequest {
    pub tenant_id: String,
    pub target: Option<RevokeTarget>,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct ListSessionsRequest {
    pub tenant_id: String,
    pub subject: String,
    pub page_size: u32,
    pub page_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub access_token_expires_at: Millis,
    pub refresh_token: String,
    pub refresh_token_expires_at: Millis,
    pub session_id: String,
    /// The access token's scopes, space-separated (RFC 6749 §3.3).
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: String,
    pub created_at: Millis,
    pub last_used_at: Millis,
    pub expires_at: Millis,
    pub refresh_count: u64,
    pub device: Device,
    pub audience: String,
    pub scopes: Vec<String>,
    /// The caller that issued the session (see `Session::client_id`).
    pub client_id: String,
    /// The thumbprint the session's access tokens are bound to; empty: none.
    pub certificate_thumbprint: String,
    /// Whether only that certificate's holder may refresh.
    pub refresh_token_bound: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionInfo>,
    pub next_page_token: String,
}

/// A token exchange (RFC 8693): a token for another audience, with at most
/// the subject token's scopes, on the same session.
#[derive(Debug, Clone, Default)]
pub struct ExchangeRequest {
    /// The access token (JWT) of the subject, as Validate takes it.
    pub subject_token: String,
    /// The audience the new token is for.
    pub audience: String,
    /// A subset of the subject token's scopes; empty: all of them.
    pub scopes: Vec<String>,
    /// Asks for a shorter life than `tokens.access_ttl` (never longer).
    pub requested_lifetime: Option<Millis>,
}

/// The token an exchange minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangedToken {
    pub access_token: String,
    pub expires_at: Millis,
    pub audience: String,
    /// The scopes granted, in the subject token's order.
    pub scopes: Vec<String>,
    /// The session of the subject token, which the new token is bound to.
    pub session_id: String,
    pub token_id: String,
    /// The delegation chain, the caller first.
    pub actors: Vec<String>,
}
