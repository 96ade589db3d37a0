//! The token authority: issues, rotates, revokes and validates, and keeps
//! its in-memory state (keys, revocations) in step with the database.
mod audit_reads;
mod binding;
mod exchange;
mod key_withdrawal;
mod sessions;
mod signing;
#[cfg(test)]
mod tests;
mod validation;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use token_authority_verify::caller::Caller;
use token_authority_verify::clock::{Millis, SharedClock};
use token_authority_verify::model::{ValidateRequest, ValidatedToken};
use token_authority_verify::validator::Validator;

use crate::error::Result;
use crate::exchange_policy::ExchangePolicy;
use crate::key_store;
use crate::keys::kek::KekSources;
use crate::keys::{KekRing, KeyAlgorithm, KeySet};
use crate::ports::{AddKeyIf, RevocationsFrom, Storage};
use crate::rate_limit::{KeyedLimiter, Rate};
use crate::refresh_token::RefreshTokenCodec;

pub use audit_reads::{DEFAULT_AUDIT_PAGE_SIZE, MAX_AUDIT_PAGE_SIZE};
pub use exchange::MAX_ACTORS;
pub use key_withdrawal::Withdrawal;
pub use signing::{KeyInfo, KeyStatus};

/// Settings in the units the domain works in.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub access_ttl: Millis,
    pub session_absolute_ttl: Millis,
    pub session_idle_ttl: Millis,
    pub refresh_retry_window: Millis,
    /// Allowed disagreement of clocks when checking `exp`/`nbf`/`iat`.
    pub clock_leeway: Millis,
    /// How long one request may wait on the database before it answers
    /// STORAGE_UNAVAILABLE: shorter than the server's deadline, so the
    /// client gets a reason and a retry hint rather than a bare CANCELLED.
    pub storage_budget: Duration,
    pub audit_refreshes: bool,
    /// Entries in the cache of verified access tokens (0: no cache).
    pub verified_token_cache: usize,
    pub key_algorithm: KeyAlgorithm,
    /// 0: no scheduled rotation.
    pub key_rotation_interval: Millis,
    pub key_publish_ahead: Millis,
    /// Where the current and previous key-encryption keys come from.
    pub kek: KekSources,
    /// 0: no cap.
    pub max_sessions_per_subject: u32,
    pub refresh_per_session: Option<Rate>,
    /// Which callers may exchange tokens for which audiences.
    pub exchange: ExchangePolicy,
    /// Tenants whose tokens must be certificate-bound: Issue and Refresh
    /// refuse without a binding, Validate refuses bearer tokens.
    pub binding_required_tenants: Vec<String>,
}

/// Slack on top of token lifetimes, for what happens between replicas' state
/// syncs: a retired key still verifies for `access_ttl` plus this (a replica
/// may sign with it until its next sync), and a revocation is enforced this
/// much longer than its tokens can live (a refresh queued behind it).
pub const REVOCATION_MARGIN: Millis = 60_000;

/// How long after a revocation any access token of the session may still
/// be accepted somewhere: tokens live `access_ttl`; a token minted by a
/// replica whose clock is ahead by up to `leeway` is accepted by a verifier
/// up to `leeway` past its `exp`; and a refresh queued behind the revocation
/// may mint one a little later (the margin).
pub fn revocation_lifetime(access_ttl: Millis, leeway: Millis) -> Millis {
    access_ttl + 2 * leeway + REVOCATION_MARGIN
}

pub struct Authority {
    store: Arc<dyn Storage>,
    clock: SharedClock,
    settings: Settings,
    kek: KekRing,
    keys: RwLock<Arc<KeySet>>,
    validator: Arc<Validator>,
    refresh_tokens: RefreshTokenCodec,
    /// Per caller and session: a caller refused for the session's tenant
    /// must not be able to spend the owner's allowance.
    refresh_limiter: Option<KeyedLimiter<(Arc<str>, Uuid)>>,
    /// Where the next revocation read resumes (see `storage::revocations`);
    /// `None` until the first full load.
    revocation_cursor: Mutex<Option<i64>>,
    /// The same, on the monotonic clock: how old the in-memory state is.
    last_sync_at: Mutex<Option<Instant>>,
    /// When idle rate-limit state was last dropped.
    limiter_cleaned_at: Mutex<Instant>,
}

/// How often idle per-session rate-limit state is dropped (a full scan).
const LIMITER_CLEANUP: Duration = Duration::from_secs(30);

impl Authority {
    /// Loads the key-encryption key, the signing keys (creating the first
    /// on a fresh database) and the refresh-token secret, and the sessions
    /// revoked recently enough to matter. Refuses to start if a stored key
    /// or secret cannot be decrypted.
    pub async fn start(
        store: Arc<dyn Storage>,
        clock: SharedClock,
        settings: Settings,
    ) -> Result<Self> {
        let now = clock.now_millis();
        let kek = key_store::load_kek_ring(&*store, &settings.kek).await?;
        // Generating and sealing a key costs; a restart usually finds keys.
        if store.newest_key_activation().await?.is_none() {
            key_store::add_key(
                &*store,
                &kek,
                settings.key_algorithm,
                now,
                now,
                AddKeyIf::NoKeys,
                "first start",
            )
            .await?;
        }
        let keys = key_store::load_key_set(&*store, &kek).await?;
        let secret = key_store::refresh_secret(&*store, &kek, now).await?;
        let validator = Arc::new(
            Validator::new(
                settings.issuer.clone(),
                settings.verified_token_cache,
                settings.clock_leeway,
            )
            .with_binding_required(settings.binding_required_tenants.iter().cloned()),
        );
        validator.withdraw_keys(&keys.withdrawn());
        validator.set_keys(keys.verifying());
        let refresh_limiter = settings
            .refresh_per_session
            .map(|rate| KeyedLimiter::new(rate, clock.clone()));
        let authority = Self {
            store,
            clock,
            kek,
            refresh_tokens: RefreshTokenCodec::new(&secret),
            keys: RwLock::new(Arc::new(keys)),
            validator,
            refresh_limiter,
            settings,
            revocation_cursor: Mutex::new(None),
            last_sync_at: Mutex::new(None),
            limiter_cleaned_at: Mutex::new(Instant::now()),
        };
        authority.sync_from_store().await?;
        Ok(authority)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn now(&self) -> Millis {
        self.clock.now_millis()
    }

    /// The validator this authority keeps in step with the database.
    pub fn validator(&self) -> &Arc<Validator> {
        &self.validator
    }

    /// Validates an access token from memory only: keys and revocations.
    pub fn validate(&self, caller: &Caller, req: &ValidateRequest) -> Result<ValidatedToken> {
        self.validator.validate(caller, req, self.now())
    }

    /// Brings the in-memory state up to date with the database, where other
    /// replicas write: sessions they revoked, and the signing key set. The
    /// first call loads every revocation within the last access-token
    /// lifetime; later calls only the recent ones. Also forgets revocations
    /// (and idle rate-limit state) that no longer matter.
    pub async fn sync_from_store(&self) -> Result<()> {
        let started = Instant::now();
        let now = self.now();
        let previous = *self
            .revocation_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let from = match previous {
            Some(cursor) => RevocationsFrom::Cursor(cursor),
            None => RevocationsFrom::Since(now - self.revocation_lifetime()),
        };
        let page = self.store.revocations(from).await?;
        // A cursor re-reads a few rows it already saw; only new ones count.
        let until = now + self.revocation_lifetime();
        let revoked: Vec<(Uuid, Millis)> = page
            .session_ids
            .iter()
            .filter_map(|id| Uuid::try_parse(id).ok())
            .filter(|id| !self.validator.is_revoked(id))
            .map(|id| (id, until))
            .collect();
        self.validator.revoke(&revoked);
        *self
            .revocation_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(page.cursor);
        self.validator.prune(now);
        self.reload_keys_if_changed().await?;
        if let Some(limiter) = &self.refresh_limiter {
            let mut cleaned = self
                .limiter_cleaned_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if cleaned.elapsed() >= LIMITER_CLEANUP {
                limiter.forget_idle();
                *cleaned = Instant::now();
            }
        }
        *self.last_sync_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
        Ok(())
    }

    /// Time since the in-memory state was last brought in step with the
    /// database (what other replicas revoked may be missing for that long).
    pub fn state_age(&self) -> Option<Duration> {
        self.last_sync_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|at| at.elapsed())
    }

    pub(super) async fn reload_keys_if_changed(&self) -> Result<()> {
        let versions = self.store.signing_key_versions().await?;
        if self.current_keys().matches(&versions) {
            return Ok(());
        }
        let keys = key_store::load_key_set(&*self.store, &self.kek).await?;
        if keys.is_empty() {
            return Ok(());
        }
        tracing::info!(keys = versions.len(), "signing keys reloaded");
        let withdrawn = self.validator.withdraw_keys(&keys.withdrawn());
        if !withdrawn.is_empty() {
            tracing::warn!(kids = ?withdrawn, "signing keys withdrawn; their tokens are refused");
        }
        self.validator.set_keys(keys.verifying());
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }

    fn current_keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How long a replica enforces a revocation after learning of it: as
    /// long as an access token of the session may be accepted anywhere.
    pub fn revocation_lifetime(&self) -> Millis {
        revocation_lifetime(self.settings.access_ttl, self.settings.clock_leeway)
    }

    /// Bounds a database-bound operation by the storage budget (every RPC's
    /// database work goes through this).
    pub async fn within_budget<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let budget = self.settings.storage_budget;
        tokio::time::timeout(budget, work)
            .await
            .unwrap_or(Err(crate::Error::StorageTimeout { budget }))
    }

    /// Marks sessions revoked in memory, effective at once on this replica.
    fn mark_revoked<'a>(&self, session_ids: impl IntoIterator<Item = &'a str>, now: Millis) {
        let until = now + self.revocation_lifetime();
        let sessions: Vec<(Uuid, Millis)> = session_ids
            .into_iter()
            .filter_map(|id| Uuid::try_parse(id).ok().map(|id| (id, until)))
            .collect();
        self.validator.revoke(&sessions);
    }
}
