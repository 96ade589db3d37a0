use sea_orm::entity::prelude::*;

/// One row per session. A refresh rotates the row in place (generation,
/// token digest), so the table never grows with the number of refreshes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub subject: String,
    pub audience: String,
    /// Space-separated, as in the `scope` claim.
    pub scopes: String,
    /// JSON object copied into every access token of the session.
    pub extra_claims: Option<String>,
    /// The caller that issued the session (the `client_id` claim); `''` for
    /// sessions from before it was recorded. Written once, by the insert.
    pub client_id: String,
    /// How many times the refresh token was rotated.
    pub generation: i64,
    /// SHA-256 of the current refresh token.
    pub token_digest: Vec<u8>,
    /// SHA-256 of the refresh token rotated last (for the retry window).
    pub previous_digest: Option<Vec<u8>>,
    /// When the last rotation committed, by the database's clock (see
    /// `db_clock`).
    pub rotated_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: i64,
    /// Absolute expiry.
    pub expires_at: i64,
    pub idle_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    /// Database-assigned position of the revocation, for replicas to
    /// resume from (see `revocations`).
    pub revocation_seq: Option<i64>,
    pub device_name: String,
    pub user_agent: String,
    pub ip: String,
    /// x5t#S256 the session's access tokens are bound to (`cnf`); NULL:
    /// bearer tokens. Written once, by the insert.
    pub cnf_x5t_s256: Option<String>,
    /// x5t#S256 a refresher's connection must present; NULL: none. Written
    /// once, by the insert; a condition of the rotation.
    pub refresh_x5t_s256: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for token_authority_domain::session::Session {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            tenant_id: m.tenant_id,
            subject: m.subject,
            audience: m.audience,
            scopes: m.scopes,
            extra_claims: m.extra_claims,
            client_id: m.client_id,
            generation: m.generation,
            token_digest: m.token_digest,
            previous_digest: m.previous_digest,
            rotated_at: m.rotated_at,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
            expires_at: m.expires_at,
            idle_expires_at: m.idle_expires_at,
            revoked_at: m.revoked_at,
            revoke_reason: m.revoke_reason,
            revocation_seq: m.revocation_seq,
            device_name: m.device_name,
            user_agent: m.user_agent,
            ip: m.ip,
            certificate_thumbprint: m.cnf_x5t_s256,
            refresh_thumbprint: m.refresh_x5t_s256,
        }
    }
}

impl From<&token_authority_domain::session::Session> for Model {
    fn from(s: &token_authority_domain::session::Session) -> Self {
        Self {
            id: s.id.clone(),
            tenant_id: s.tenant_id.clone(),
            subject: s.subject.clone(),
            audience: s.audience.clone(),
            scopes: s.scopes.clone(),
            extra_claims: s.extra_claims.clone(),
            client_id: s.client_id.clone(),
            generation: s.generation,
            token_digest: s.token_digest.clone(),
            previous_digest: s.previous_digest.clone(),
            rotated_at: s.rotated_at,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            idle_expires_at: s.idle_expires_at,
            revoked_at: s.revoked_at,
            revoke_reason: s.revoke_reason.clone(),
            revocation_seq: s.revocation_seq,
            device_name: s.device_name.clone(),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            cnf_x5t_s256: s.certificate_thumbprint.clone(),
            refresh_x5t_s256: s.refresh_thumbprint.clone(),
        }
    }
}
