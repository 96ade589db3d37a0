//! The token authority: issues, rotates, revokes and validates, and keeps
//! its in-memory state (keys, revocations) in step with the database.
mod sessions;
mod signing;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::caller::Caller;
use super::error::Result;
use super::key_store;
use super::keys::{Kek, KeyAlgorithm, KeySet};
use super::model::{ValidateRequest, ValidatedToken};
use super::refresh_token::RefreshTokenCodec;
use super::validator::Validator;
use crate::clock::{duration_millis, Millis, SharedClock};
use crate::config::rate::Rate;
use crate::config::Config;
use crate::rate_limit::KeyedLimiter;
use crate::storage::keys::AddKeyIf;
use crate::storage::Store;

pub use signing::{KeyInfo, KeyStatus};

/// Settings in the units the domain works in.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub access_ttl: Millis,
    pub session_absolute_ttl: Millis,
    pub session_idle_ttl: Millis,
    pub refresh_grace: Millis,
    pub audit_refreshes: bool,
    /// Entries in the cache of verified access tokens (0: no cache).
    pub verified_token_cache: usize,
    pub key_algorithm: KeyAlgorithm,
    /// 0: no scheduled rotation.
    pub key_rotation_interval: Millis,
    pub key_publish_ahead: Millis,
    pub kek_file: Option<PathBuf>,
    /// 0: no cap.
    pub max_sessions_per_subject: u32,
    pub refresh_per_session: Option<Rate>,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        let t = &c.tokens;
        Self {
            issuer: t.issuer.clone(),
            access_ttl: duration_millis(t.access_ttl),
            session_absolute_ttl: duration_millis(t.session_absolute_ttl),
            session_idle_ttl: duration_millis(t.session_idle_ttl),
            refresh_grace: duration_millis(t.refresh_grace),
            audit_refreshes: t.audit_refreshes,
            verified_token_cache: t.verified_token_cache,
            key_algorithm: c.keys.algorithm,
            key_rotation_interval: duration_millis(c.keys.rotation_interval),
            key_publish_ahead: duration_millis(c.keys.publish_ahead),
            kek_file: c.keys.kek_file.clone(),
            max_sessions_per_subject: c.limits.max_sessions_per_subject,
            refresh_per_session: c.limits.refresh_per_session,
        }
    }
}

/// How long past `revoked_at + access_ttl` a revocation is still enforced.
/// `revoked_at` is read when the Revoke starts, and a refresh that queued
/// behind it may mint an access token a little later (up to the request
/// deadline), possibly on a replica whose clock differs: cover both widely.
pub const REVOCATION_MARGIN: Millis = 60_000;

/// How far back each incremental revocation sync looks, past the previous
/// sync. A revocation is stamped before it commits, so it may become visible
/// a little after its timestamp: this covers the request deadline plus
/// clock skew between replicas with a wide margin.
const SYNC_LOOKBACK: Millis = 30_000;

pub struct Authority {
    store: Store,
    clock: SharedClock,
    settings: Settings,
    kek: Kek,
    keys: RwLock<Arc<KeySet>>,
    validator: Arc<Validator>,
    refresh_tokens: RefreshTokenCodec,
    /// Per caller and session: a caller refused for the session's tenant
    /// must not be able to spend the owner's allowance.
    refresh_limiter: Option<KeyedLimiter<(Arc<str>, Uuid)>>,
    /// Start of the last successful sync; `None` until the first full load.
    last_sync: Mutex<Option<Millis>>,
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
    pub async fn start(store: Store, clock: SharedClock, settings: Settings) -> Result<Self> {
        let now = clock.now_millis();
        let kek = key_store::load_kek(&store, settings.kek_file.as_deref()).await?;
        key_store::add_key(
            &store,
            &kek,
            settings.key_algorithm,
            now,
            now,
            AddKeyIf::NoKeys,
            "first start",
        )
        .await?;
        let keys = key_store::load_key_set(&store, &kek).await?;
        let secret = key_store::refresh_secret(&store, &kek, now).await?;
        let validator = Arc::new(Validator::new(
            settings.issuer.clone(),
            settings.verified_token_cache,
        ));
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
            last_sync: Mutex::new(None),
            last_sync_at: Mutex::new(None),
            limiter_cleaned_at: Mutex::new(Instant::now()),
        };
        authority.sync_from_store().await?;
        Ok(authority)
    }

    pub fn store(&self) -> &Store {
        &self.store
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
        let previous = *self.last_sync.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.settings.access_ttl + REVOCATION_MARGIN;
        let since = match previous {
            Some(at) => (at - SYNC_LOOKBACK).max(now - window),
            None => now - window,
        };
        let revoked: Vec<(Uuid, Millis)> = self
            .store
            .revoked_since(since)
            .await?
            .into_iter()
            .filter_map(|(id, revoked_at)| {
                let until = revoked_at + self.settings.access_ttl + REVOCATION_MARGIN;
                Uuid::try_parse(&id).ok().map(|id| (id, until))
            })
            .collect();
        self.validator.revoke(&revoked);
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
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
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

    async fn reload_keys_if_changed(&self) -> Result<()> {
        let versions = key_store::key_versions(&self.store).await?;
        if self.current_keys().matches(&versions) {
            return Ok(());
        }
        let keys = key_store::load_key_set(&self.store, &self.kek).await?;
        if keys.is_empty() {
            return Ok(());
        }
        tracing::info!(keys = versions.len(), "signing keys reloaded");
        self.validator.set_keys(keys.verifying());
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }

    fn current_keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks sessions revoked in memory, effective at once on this replica.
    fn mark_revoked<'a>(&self, session_ids: impl IntoIterator<Item = &'a str>, now: Millis) {
        let until = now + self.settings.access_ttl + REVOCATION_MARGIN;
        let sessions: Vec<(Uuid, Millis)> = session_ids
            .into_iter()
            .filter_map(|id| Uuid::try_parse(id).ok().map(|id| (id, until)))
            .collect();
        self.validator.revoke(&sessions);
    }
}
