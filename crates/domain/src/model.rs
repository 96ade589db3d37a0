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
}

#[derive(Debug, Clone, Default)]
pub struct RefreshRequest {
    pub refresh_token: String,
    /// Fields left empty keep their stored value.
    pub device: Device,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionInfo>,
    pub next_page_token: String,
}
