//! A session as the rules see it: one per login, its refresh token rotated
//! in place, so the store grows with sessions and not with refreshes.
use token_authority_verify::clock::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// A UUIDv7: ordered by creation.
    pub id: String,
    pub tenant_id: String,
    pub subject: String,
    pub audience: String,
    /// Space-separated, as in the `scope` claim.
    pub scopes: String,
    /// JSON object copied into every access token of the session.
    pub extra_claims: Option<String>,
    /// The caller that issued the session: the `client_id` claim of all its
    /// access tokens, whoever refreshes. Empty for sessions issued before it
    /// was recorded. Never changes.
    pub client_id: String,
    /// How many times the refresh token was rotated.
    pub generation: i64,
    /// SHA-256 of the current refresh token.
    pub token_digest: Vec<u8>,
    /// SHA-256 of the refresh token rotated last (for the retry window).
    pub previous_digest: Option<Vec<u8>>,
    /// When the last rotation committed, by the store's clock (on
    /// PostgreSQL the database's, shared by every replica).
    pub rotated_at: Option<Millis>,
    pub created_at: Millis,
    pub last_used_at: Millis,
    /// Absolute expiry.
    pub expires_at: Millis,
    pub idle_expires_at: Millis,
    pub revoked_at: Option<Millis>,
    pub revoke_reason: Option<String>,
    /// Store-assigned position of the revocation, for replicas to resume
    /// reading revocations from.
    pub revocation_seq: Option<i64>,
    pub device_name: String,
    pub user_agent: String,
    pub ip: String,
    /// The x5t#S256 thumbprint every access token of the session is bound
    /// to (`cnf`); `None`: bearer tokens. Set by Issue, never changed.
    pub certificate_thumbprint: Option<String>,
    /// The thumbprint of the certificate a refresher's connection must
    /// present; `None`: anyone holding the refresh token may refresh. Set
    /// by Issue, never changed.
    pub refresh_thumbprint: Option<String>,
}

impl Session {
    /// Neither revoked nor past either expiry. The store's queries of live
    /// sessions (rotation, listing, the cap) apply this same condition.
    pub fn is_live(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && now < self.expires_at && now < self.idle_expires_at
    }

    /// When the session ends if nothing else happens: the earlier expiry.
    pub fn ends_at(&self) -> Millis {
        self.expires_at.min(self.idle_expires_at)
    }
}
