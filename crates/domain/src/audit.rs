//! What the audit trail records.
use token_authority_verify::clock::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Issued,
    Refreshed,
    Revoked,
    ReuseDetected,
    /// Revoked to keep a subject within its maximum of live sessions.
    Evicted,
    /// A request refused for its caller's credentials or permissions.
    AccessDenied,
    KeyRotated,
    /// A signing key withdrawn (compromised): it neither signs nor verifies.
    KeyWithdrawn,
    /// An access token minted by token exchange for another audience.
    TokenExchanged,
    /// Every sealed key and secret re-sealed under one KEK (`keys rewrap`).
    KekRewrapped,
}

impl AuditKind {
    pub const ALL: [AuditKind; 10] = [
        AuditKind::Issued,
        AuditKind::Refreshed,
        AuditKind::Revoked,
        AuditKind::ReuseDetected,
        AuditKind::Evicted,
        AuditKind::AccessDenied,
        AuditKind::KeyRotated,
        AuditKind::KeyWithdrawn,
        AuditKind::TokenExchanged,
        AuditKind::KekRewrapped,
    ];

    /// The kind stored as `name`, if this release knows it.
    pub fn parse(name: &str) -> Option<AuditKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The stored name, stable across releases.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Issued => "issued",
            AuditKind::Refreshed => "refreshed",
            AuditKind::Revoked => "revoked",
            AuditKind::ReuseDetected => "reuse_detected",
            AuditKind::Evicted => "evicted",
            AuditKind::AccessDenied => "access_denied",
            AuditKind::KeyRotated => "key_rotated",
            AuditKind::KeyWithdrawn => "key_withdrawn",
            AuditKind::TokenExchanged => "token_exchanged",
            AuditKind::KekRewrapped => "kek_rewrapped",
        }
    }
}

/// One audit event. Events of a session change are written by the store in
/// the same transaction as the change; others (refusals) are queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Millis,
    pub kind: AuditKind,
    pub tenant_id: String,
    pub subject: String,
    pub session_id: Option<String>,
    pub detail: Option<String>,
}
