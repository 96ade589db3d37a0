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
    /// How many times the refresh token was rotated.
    pub generation: i64,
    /// SHA-256 of the current refresh token.
    pub token_digest: Vec<u8>,
    /// SHA-256 of the refresh token rotated last (for the retry window).
    pub previous_digest: Option<Vec<u8>>,
    /// When the last rotation committed, by the database's clock (see
    /// `storage::db_clock`).
    pub rotated_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: i64,
    /// Absolute expiry.
    pub expires_at: i64,
    pub idle_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    /// Database-assigned position of the revocation, for replicas to
    /// resume from (see `storage::revocations`).
    pub revocation_seq: Option<i64>,
    pub device_name: String,
    pub user_agent: String,
    pub ip: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
