//! The token authority: issues, rotates, revokes and validates.
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::access_token::{self, AccessClaims};
use super::error::{Error, Result};
use super::input;
use super::model::*;
use super::refresh_token::{RefreshToken, RefreshTokenCodec};
use super::revocations::RevokedSessions;
use super::signing_keys::{self, KeyRing};
use super::verified_tokens::VerifiedTokens;
use crate::clock::{duration_millis, Millis, SharedClock};
use crate::config::TokenConfig;
use crate::storage::audit::AuditKind;
use crate::storage::sessions::{RevokeOutcome, Rotation, SessionRow};
use crate::storage::Store;

/// Name of the server secret the refresh-token keys derive from.
const REFRESH_SECRET: &str = "refresh_token_root_v1";

/// Token settings in the units the domain works in.
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
}

impl From<&TokenConfig> for Settings {
    fn from(c: &TokenConfig) -> Self {
        Self {
            issuer: c.issuer.clone(),
            access_ttl: duration_millis(c.access_ttl),
            session_absolute_ttl: duration_millis(c.session_absolute_ttl),
            session_idle_ttl: duration_millis(c.session_idle_ttl),
            refresh_grace: duration_millis(c.refresh_grace),
            audit_refreshes: c.audit_refreshes,
            verified_token_cache: c.verified_token_cache,
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
    keys: RwLock<Arc<KeyRing>>,
    refresh_tokens: RefreshTokenCodec,
    revoked: RevokedSessions,
    verified: VerifiedTokens,
    /// Start of the last successful sync; `None` until the first full load.
    last_sync: std::sync::Mutex<Option<Millis>>,
}

impl Authority {
    /// Loads (or on first start creates) the signing key and the refresh
    /// token secret, and the sessions revoked within the last access-token
    /// lifetime.
    pub async fn start(store: Store, clock: SharedClock, settings: Settings) -> Result<Self> {
        let now = clock.now_millis();
        let keys = load_or_create_keys(&store, now).await?;
        let mut candidate = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut candidate)
            .map_err(|_| Error::Internal("system random number generator failed".into()))?;
        let secret = store
            .secret_or_insert(REFRESH_SECRET, candidate, now)
            .await?;
        let authority = Self {
            store,
            clock,
            refresh_tokens: RefreshTokenCodec::new(&secret),
            keys: RwLock::new(Arc::new(keys)),
            revoked: RevokedSessions::default(),
            verified: VerifiedTokens::new(settings.verified_token_cache),
            settings,
            last_sync: std::sync::Mutex::new(None),
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

    pub fn revoked_sessions(&self) -> &RevokedSessions {
        &self.revoked
    }

    /// Brings the in-memory state up to date with the database, where other
    /// replicas write: sessions they revoked, and the signing key set. The
    /// first call loads every revocation within the last access-token
    /// lifetime; later calls only the recent ones. Also forgets revocations
    /// that no longer matter.
    pub async fn sync_from_store(&self) -> Result<()> {
        let now = self.clock.now_millis();
        let previous = *self.last_sync.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.settings.access_ttl + REVOCATION_MARGIN;
        let since = match previous {
            Some(at) => (at - SYNC_LOOKBACK).max(now - window),
            None => now - window,
        };
        for (id, revoked_at) in self.store.revoked_since(since).await? {
            if let Ok(id) = Uuid::try_parse(&id) {
                self.revoked
                    .insert(id, revoked_at + self.settings.access_ttl);
            }
        }
        self.revoked.prune(now);
        self.reload_keys_if_changed().await?;
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        Ok(())
    }

    async fn reload_keys_if_changed(&self) -> Result<()> {
        let stored = self.store.signing_keys().await?;
        if self.current_keys().matches(&stored) {
            return Ok(());
        }
        if let Some(ring) = KeyRing::from_stored(&stored)? {
            tracing::info!(signing_kid = %ring.signing().kid, keys = stored.len(), "signing keys reloaded");
            *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        }
        Ok(())
    }

    pub async fn issue(&self, req: IssueRequest) -> Result<TokenPair> {
        input::tenant_id("tenant_id", &req.tenant_id)?;
        input::name("subject", &req.subject, input::MAX_SUBJECT)?;
        input::name("audience", &req.audience, input::MAX_AUDIENCE)?;
        let scopes = input::scopes(&req.scopes)?;
        let device = checked_device(&req.device)?;
        input::extra_claims(&req.extra_claims)?;

        let now = self.clock.now_millis();
        let session_id = Uuid::now_v7();
        let refresh_token = self.refresh_tokens.mint(session_id)?;
        let row = SessionRow {
            id: session_id.to_string(),
            tenant_id: req.tenant_id,
            subject: req.subject,
            audience: req.audience,
            scopes: scopes.join(" "),
            extra_claims: (!req.extra_claims.is_empty())
                .then(|| serde_json::to_string(&req.extra_claims))
                .transpose()
                .map_err(|e| Error::Internal(e.to_string()))?,
            generation: 0,
            token_digest: refresh_token.digest().to_vec(),
            previous_digest: None,
            rotated_at: None,
            created_at: now,
            last_used_at: now,
            expires_at: now + self.settings.session_absolute_ttl,
            idle_expires_at: now + self.settings.session_idle_ttl,
            revoked_at: None,
            revoke_reason: None,
            device_name: device.name,
            user_agent: device.user_agent,
            ip: device.ip,
        };
        self.store.insert_session(row.clone()).await?;
        self.token_pair(&row, &refresh_token, now)
    }

    /// Rotates a refresh token. See `refresh_token` for the token format.
    pub async fn refresh(&self, req: RefreshRequest) -> Result<TokenPair> {
        input::token(
            "refresh_token",
            &req.refresh_token,
            input::MAX_REFRESH_TOKEN,
        )?;
        let device = checked_device(&req.device)?;
        let presented = self.refresh_tokens.parse(&req.refresh_token)?;
        let generation = i64::try_from(presented.generation)
            .ok()
            .filter(|g| *g < i64::MAX)
            .ok_or(Error::TokenInvalid)?;
        let successor = self.refresh_tokens.successor(&presented);
        let digest = presented.digest();
        let now = self.clock.now_millis();
        let session_id = presented.session_id.to_string();
        let rotation = Rotation {
            session_id: &session_id,
            from_generation: generation,
            from_digest: &digest,
            to_digest: &successor.digest(),
            now,
            idle_expires_at: now + self.settings.session_idle_ttl,
            device_name: non_empty(&device.name),
            user_agent: non_empty(&device.user_agent),
            ip: non_empty(&device.ip),
        };
        if let Some(row) = self
            .store
            .rotate(&rotation, self.settings.audit_refreshes)
            .await?
        {
            return self.token_pair(&row, &successor, now);
        }

        // The session was not at the presented generation: find out why.
        let row = self
            .store
            .session(&session_id)
            .await?
            .ok_or(Error::SessionExpired)?;
        if row.revoked_at.is_some() {
            return Err(Error::SessionRevoked);
        }
        if now >= row.expires_at || now >= row.idle_expires_at {
            return Err(Error::SessionExpired);
        }
        let just_rotated = row.generation == generation + 1
            && row.previous_digest.as_deref() == Some(&digest[..])
            && row
                .rotated_at
                .is_some_and(|at| now - at <= self.settings.refresh_grace);
        if just_rotated {
            // A concurrent or retried refresh of the same token (two tabs, a
            // lost response): hand out the successor that is already current.
            return self.token_pair(&row, &successor, now);
        }
        if row.generation > generation {
            self.revoke_for_reuse(&row, now).await?;
            return Err(Error::TokenReused);
        }
        // A genuine token from a generation the database never reached, or
        // a digest that does not match its own generation.
        Err(Error::TokenInvalid)
    }

    async fn revoke_for_reuse(&self, row: &SessionRow, now: Millis) -> Result<()> {
        tracing::warn!(
            tenant_id = %row.tenant_id,
            session_id = %row.id,
            generation = row.generation,
            "refresh token reuse detected; revoking session"
        );
        self.store
            .revoke_session(
                &row.id,
                None,
                now,
                AuditKind::ReuseDetected,
                "refresh token reuse detected",
            )
            .await?;
        self.mark_revoked(&row.id, now);
        Ok(())
    }

    /// Returns how many sessions this call revoked.
    pub async fn revoke(&self, req: RevokeRequest) -> Result<u32> {
        input::optional_text("reason", &req.reason, input::MAX_REASON)?;
        let reason = if req.reason.is_empty() {
            "revoked by request"
        } else {
            req.reason.as_str()
        };
        let now = self.clock.now_millis();
        let target = req.target.ok_or_else(|| {
            Error::invalid(
                "target",
                "one of refresh_token, session_id or all_sessions is required",
            )
        })?;
        let (session_id, tenant) = match target {
            RevokeTarget::AllSessions { subject } => {
                input::tenant_id("tenant_id", &req.tenant_id)?;
                input::name("all_sessions.subject", &subject, input::MAX_SUBJECT)?;
                let ids = self
                    .store
                    .revoke_subject(&req.tenant_id, &subject, now, reason)
                    .await?;
                for id in &ids {
                    self.mark_revoked(id, now);
                }
                return Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX));
            }
            RevokeTarget::Session(id) => {
                input::tenant_id("tenant_id", &req.tenant_id)?;
                (
                    input::session_id("session_id", &id)?,
                    Some(req.tenant_id.as_str()),
                )
            }
            RevokeTarget::RefreshToken(token) => {
                if !req.tenant_id.is_empty() {
                    input::tenant_id("tenant_id", &req.tenant_id)?;
                }
                input::token("refresh_token", &token, input::MAX_REFRESH_TOKEN)?;
                let token: RefreshToken = self.refresh_tokens.parse(&token)?;
                (token.session_id, non_empty(&req.tenant_id))
            }
        };
        let id = session_id.to_string();
        match self
            .store
            .revoke_session(&id, tenant, now, AuditKind::Revoked, reason)
            .await?
        {
            RevokeOutcome::Revoked(_) => {
                self.mark_revoked(&id, now);
                Ok(1)
            }
            RevokeOutcome::AlreadyRevoked => Ok(0),
            RevokeOutcome::NotFound => Err(Error::SessionNotFound),
        }
    }

    pub async fn list_sessions(&self, req: ListSessionsRequest) -> Result<SessionPage> {
        input::tenant_id("tenant_id", &req.tenant_id)?;
        input::name("subject", &req.subject, input::MAX_SUBJECT)?;
        let page_size = input::page_size(req.page_size);
        let after = decode_page_token(&req.page_token)?;
        let now = self.clock.now_millis();
        let mut rows = self
            .store
            .live_sessions(
                &req.tenant_id,
                &req.subject,
                now,
                after.as_deref(),
                u64::from(page_size) + 1,
            )
            .await?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last()
                .map(|r| encode_page_token(&r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(SessionPage {
            sessions: rows.into_iter().map(session_info).collect(),
            next_page_token,
        })
    }

    /// Validates an access token from memory only: keys and revocations.
    pub fn validate(&self, req: &ValidateRequest) -> Result<ValidatedToken> {
        input::token("access_token", &req.access_token, input::MAX_ACCESS_TOKEN)?;
        let now = self.clock.now_millis();
        let key = VerifiedTokens::key(&req.access_token);
        let verified = match self.verified.get(&key) {
            Some(hit) => {
                access_token::check_lifetime(&hit.claims, now)?;
                hit
            }
            None => {
                let keys = self.current_keys();
                let fresh = Arc::new(access_token::verify(
                    &keys,
                    &self.settings.issuer,
                    &req.access_token,
                    now,
                )?);
                self.verified
                    .insert(key, fresh.clone(), now.div_euclid(1000));
                fresh
            }
        };
        let claims = &verified.claims;
        let session = Uuid::try_parse(&claims.sid).map_err(|_| Error::TokenInvalid)?;
        if !req.expected_tenant_id.is_empty() && claims.tenant != req.expected_tenant_id {
            return Err(Error::TenantMismatch);
        }
        if !req.expected_audience.is_empty() && claims.aud != req.expected_audience {
            return Err(Error::AudienceMismatch);
        }
        if self.revoked.contains(&session) {
            return Err(Error::SessionRevoked);
        }
        Ok(ValidatedToken {
            claims: claims.clone(),
            key_id: verified.kid.clone(),
        })
    }

    fn current_keys(&self) -> Arc<KeyRing> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mark_revoked(&self, session_id: &str, now: Millis) {
        if let Ok(id) = Uuid::try_parse(session_id) {
            self.revoked
                .insert(id, now + self.settings.access_ttl + REVOCATION_MARGIN);
        }
    }

    fn token_pair(
        &self,
        row: &SessionRow,
        refresh: &RefreshToken,
        now: Millis,
    ) -> Result<TokenPair> {
        // An access token never outlives its session.
        let access_expires_at = (now + self.settings.access_ttl).min(row.expires_at);
        let extra: Map<String, Value> = match &row.extra_claims {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| Error::Internal(format!("stored extra claims: {e}")))?,
            None => Map::new(),
        };
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: row.subject.clone(),
            aud: row.audience.clone(),
            exp: access_expires_at.div_euclid(1000),
            iat: now.div_euclid(1000),
            nbf: now.div_euclid(1000),
            jti: Uuid::new_v4().simple().to_string(),
            sid: row.id.clone(),
            tenant: row.tenant_id.clone(),
            scope: row.scopes.clone(),
            extra,
        };
        Ok(TokenPair {
            access_token: access_token::sign(&self.current_keys(), &claims)?,
            access_token_expires_at: claims.exp * 1000,
            refresh_token: refresh.as_str().to_owned(),
            refresh_token_expires_at: row.expires_at.min(row.idle_expires_at),
            session_id: row.id.clone(),
        })
    }
}

async fn load_or_create_keys(store: &Store, now: Millis) -> Result<KeyRing> {
    if let Some(ring) = KeyRing::from_stored(&store.signing_keys().await?)? {
        return Ok(ring);
    }
    store
        .insert_signing_key(signing_keys::generate_ed25519(now)?)
        .await?;
    KeyRing::from_stored(&store.signing_keys().await?)?
        .ok_or_else(|| Error::Internal("no signing key after creating one".into()))
}

fn checked_device(device: &Device) -> Result<Device> {
    input::optional_text("device.name", &device.name, input::MAX_DEVICE_NAME)?;
    input::optional_text(
        "device.user_agent",
        &device.user_agent,
        input::MAX_USER_AGENT,
    )?;
    Ok(Device {
        name: device.name.clone(),
        user_agent: device.user_agent.clone(),
        ip: input::ip("device.ip", &device.ip)?,
    })
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn session_info(row: SessionRow) -> SessionInfo {
    SessionInfo {
        expires_at: row.expires_at.min(row.idle_expires_at),
        refresh_count: u64::try_from(row.generation).unwrap_or(0),
        scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        session_id: row.id,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        device: Device {
            name: row.device_name,
            user_agent: row.user_agent,
            ip: row.ip,
        },
        audience: row.audience,
    }
}

fn encode_page_token(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

fn decode_page_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "is not a page token returned by ListSessions");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let id = String::from_utf8(bytes).map_err(|_| invalid())?;
    Uuid::try_parse(&id).map_err(|_| invalid())?;
    Ok(Some(id))
}
