//! What the domain needs from storage, in the domain's own terms. The
//! storage crate implements these traits for SQLite and PostgreSQL; a
//! fake implementation can stand in for unit tests. Every write that
//! changes a session records its audit event in the same transaction.
use async_trait::async_trait;
use token_authority_verify::clock::Millis;
use token_authority_verify::StorageError;

use crate::audit::{AuditEvent, AuditKind};
use crate::audit_read::{AuditQuery, AuditRecord};
use crate::keys::withdrawal::WithdrawalPlan;
use crate::keys::KeyVersion;
use crate::rotation::Rotation;
use crate::session::Session;

pub type StoreResult<T> = Result<T, StorageError>;

/// A subject's maximum of live sessions, applied when one more is issued.
#[derive(Debug, Clone, Copy)]
pub struct SessionCap {
    pub max: u64,
    pub now: Millis,
    /// Only sessions created before this may be evicted. Evicting younger
    /// ones would let a subject that logs in in a loop fill every replica's
    /// revoked set (each evicted session with live access tokens needs an
    /// entry); this way at most `max` evictions happen per access-token
    /// lifetime.
    pub evictable_before: Millis,
}

/// What became of a new session.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored, after revoking these sessions to stay within the cap.
    Stored { evicted: Vec<String> },
    /// Not stored: the subject is at its cap and too few of its sessions
    /// may be evicted yet; one more becomes evictable at `evictable_at`.
    AtCapacity { evictable_at: Millis },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    AlreadyRevoked,
    NotFound,
    /// The session belongs to a tenant outside the caller's.
    TenantNotPermitted,
}

/// Which session one revocation targets.
#[derive(Debug, Clone, Copy)]
pub struct RevokeSession<'a> {
    pub id: &'a str,
    /// The session must belong to this tenant (`None`: any).
    pub tenant_id: Option<&'a str>,
    /// The caller acts only on these tenants (`None`: all).
    pub tenants: Option<&'a [String]>,
    pub now: Millis,
    pub kind: AuditKind,
    pub reason: &'a str,
}

impl RevokeSession<'_> {
    /// Why the target may not be revoked by this request, from the tenant
    /// of the session found: a session of another tenant than the one
    /// named is not found (its existence stays hidden); one outside the
    /// caller's tenants is not permitted. `None`: revoke it.
    pub fn refusal(&self, session_tenant: &str) -> Option<RevokeOutcome> {
        if self.tenant_id.is_some_and(|t| t != session_tenant) {
            return Some(RevokeOutcome::NotFound);
        }
        if self
            .tenants
            .is_some_and(|allowed| !allowed.iter().any(|t| t == session_tenant))
        {
            return Some(RevokeOutcome::TenantNotPermitted);
        }
        None
    }
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Inserts a new session and its `issued` event (by its `client_id`). With
    /// a `cap`, first revokes the subject's least recently used live
    /// sessions so that at most `cap.max` remain, if they are evictable.
    /// Concurrent issues for one subject are serialised.
    async fn insert_session(
        &self,
        session: &Session,
        cap: Option<SessionCap>,
    ) -> StoreResult<Inserted>;

    /// Applies `rotation` atomically if [`Rotation::applies_to`] holds, with
    /// the `refreshed` event when `audit` is set; returns the rotated
    /// session, or `None` when it did not apply.
    async fn rotate(&self, rotation: &Rotation<'_>, audit: bool) -> StoreResult<Option<Session>>;

    /// A session, with the store's clock read at the same time (what
    /// `rotated_at` is compared with); `now` is the service's clock, which
    /// a store inside this process may return as its own.
    async fn session_and_store_now(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(Session, Millis)>>;

    async fn revoke_session(&self, target: RevokeSession<'_>) -> StoreResult<RevokeOutcome>;

    /// Revokes every live session of a subject; returns the ids this call
    /// revoked (not those another request revoked meanwhile).
    async fn revoke_subject(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        reason: &str,
    ) -> StoreResult<Vec<String>>;

    /// Live sessions of a subject in id (= creation) order, after `after`.
    async fn live_sessions(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<Session>>;
}

/// Where a read of revocations starts.
#[derive(Debug, Clone, Copy)]
pub enum RevocationsFrom {
    /// Everything revoked at or after a time (`revoked_at` is stamped by
    /// the revoking replica's clock: on a first load only, with a margin
    /// for replicas whose clocks differ).
    Since(Millis),
    /// Everything at or after a cursor from an earlier page.
    Cursor(i64),
}

/// Revoked session ids, and where to resume reading.
#[derive(Debug, Default)]
pub struct RevocationPage {
    pub session_ids: Vec<String>,
    pub cursor: i64,
}

#[async_trait]
pub trait RevocationLog: Send + Sync {
    /// Sessions revoked since `from`, with the cursor to read on from. A
    /// cursor never skips a revocation that commits later, whatever the
    /// replicas' clocks say; it may re-read a few.
    async fn revocations(&self, from: RevocationsFrom) -> StoreResult<RevocationPage>;
}

/// A signing key as stored: the private half sealed by the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: Millis,
    pub retired_at: Option<Millis>,
    pub activates_at: Millis,
    /// Withdrawn (compromised) then; the private half is wiped.
    pub withdrawn_at: Option<Millis>,
}

/// A withdrawal, as `KeyStore::withdraw_signing_key` takes it.
#[derive(Debug, Clone)]
pub struct WithdrawKey {
    pub kid: String,
    pub now: Millis,
    /// Stored, activating as the plan says, only if no pending key can
    /// take over.
    pub replacement: StoredKey,
    /// The caller, for the audit trail.
    pub by: String,
    pub reason: String,
}

/// When `add_signing_key` adds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddKeyIf {
    /// Only into an empty store (first start).
    NoKeys,
    /// Only if the newest key activated before this time (scheduled
    /// rotation: another replica may have rotated already).
    NewestActivatedBefore(Millis),
    Always,
}

/// A row holding a sealed value, as a rewrap sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedRow<'a> {
    SigningKey { kid: &'a str },
    Secret { name: &'a str },
}

/// What a rewrap does with one row's value: its replacement, or `None` to
/// leave it. An error rolls the whole rewrap back.
pub type Reseal<'a> =
    dyn Fn(SealedRow<'_>, &[u8]) -> crate::error::Result<Option<Vec<u8>>> + Send + Sync + 'a;

/// The `kek_rewrapped` event of a rewrap.
#[derive(Debug, Clone, Copy)]
pub struct RewrapAudit<'a> {
    pub at: Millis,
    pub by: &'a str,
    pub target_kek_id: &'a str,
}

/// How many rows a rewrap replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    pub keys: u64,
    pub secrets: u64,
}

impl RewrapAudit<'_> {
    /// The event's detail, once the rows are re-sealed.
    pub fn detail(&self, resealed: Resealed) -> String {
        format!(
            "re-sealed {} signing keys and {} secrets under KEK {}",
            resealed.keys, resealed.secrets, self.target_kek_id
        )
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key, newest activation first.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;

    /// Enough to tell whether the key set changed, without reading private
    /// keys on every sync.
    async fn signing_key_versions(&self) -> StoreResult<Vec<KeyVersion>>;

    /// Adds `key` when `condition` holds, and retires every older unretired
    /// key as of the new key's activation, with the `key_rotated` event (by
    /// `by`). Activation times stay strictly increasing: the new key
    /// activates no earlier than 1 ms after the newest. Returns its
    /// activation time if it was added. Replicas adding at once add one.
    async fn add_signing_key(
        &self,
        key: StoredKey,
        condition: AddKeyIf,
        by: &str,
    ) -> StoreResult<Option<Millis>>;

    /// When the newest key activates (or activated), if there is a key;
    /// withdrawn keys do not count.
    async fn newest_key_activation(&self) -> StoreResult<Option<Millis>>;

    /// Withdraws `request.kid` in one transaction as `withdrawal::plan`
    /// decides: marks it withdrawn and wipes its private half, hands the
    /// signing over (promoting a pending key, or storing
    /// `request.replacement`), records the `key_withdrawn` event, and tells
    /// other replicas.
    async fn withdraw_signing_key(&self, request: WithdrawKey) -> StoreResult<WithdrawalPlan>;

    /// Replaces a key's sealed private half.
    async fn replace_private_key(&self, kid: &str, sealed: Vec<u8>) -> StoreResult<()>;

    /// The secret called `name`, storing `candidate` first if there is none
    /// (replicas starting together all read back the first one stored).
    async fn secret_or_insert(
        &self,
        name: &str,
        candidate: Vec<u8>,
        now: Millis,
    ) -> StoreResult<Vec<u8>>;

    /// Every stored secret value (to find out what they are sealed under).
    async fn secret_values(&self) -> StoreResult<Vec<Vec<u8>>>;

    /// Replaces a secret's value only if it is still `old`.
    async fn replace_secret(&self, name: &str, old: &[u8], new: Vec<u8>) -> StoreResult<()>;

    /// In one transaction: passes every signing key's private half and
    /// every secret through `reseal`, stores what it returns, and records
    /// the `kek_rewrapped` event. No key is added meanwhile.
    async fn reseal_all(
        &self,
        reseal: &Reseal<'_>,
        audit: RewrapAudit<'_>,
    ) -> crate::error::Result<Resealed>;
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends events that are not part of a session change (refusals).
    async fn record(&self, events: &[AuditEvent]) -> StoreResult<()>;

    /// Events matching `query`, newest first in `(occurred_at, id)` order,
    /// at most `query.limit`.
    async fn read_audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;
}

/// Everything the authority persists through.
pub trait Storage: SessionStore + RevocationLog + KeyStore + AuditLog {}

impl<T: SessionStore + RevocationLog + KeyStore + AuditLog> Storage for T {}
