//! Access tokens and the keys that sign them: minting, rotation, listing.
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Authority, REVOCATION_MARGIN};
use crate::access_token::{self, AccessClaims};
use crate::binding::Confirmation;
use crate::caller::Caller;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::key_store;
use crate::keys::KeyAlgorithm;
use crate::model::TokenPair;
use crate::ports::AddKeyIf;
use crate::refresh_token::RefreshToken;
use crate::session::Session;
use token_authority_verify::StorageError;

/// The longest a new key may wait before it signs.
const MAX_ACTIVATE_IN: Millis = 365 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Published, verifies, does not sign yet.
    Pending,
    /// Signs new tokens.
    Active,
    /// A newer key signs; this one verifies until its tokens have expired.
    Retired,
    /// Compromised: neither signs nor verifies.
    Withdrawn,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "pending",
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
            KeyStatus::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: String,
    pub status: KeyStatus,
    pub created_at: Millis,
    pub activates_at: Millis,
    pub retired_at: Option<Millis>,
    /// When the last token it can have signed expires (retired keys).
    pub verifies_until: Option<Millis>,
    pub withdrawn_at: Option<Millis>,
}

impl Authority {
    /// Adds a new signing key, published at once and signing from
    /// `now + activate_in` (default `keys.publish_ahead`); the current key
    /// retires then and keeps verifying until its tokens have expired.
    pub async fn rotate_signing_key(
        &self,
        caller: &Caller,
        algorithm: Option<KeyAlgorithm>,
        activate_in: Option<Millis>,
    ) -> Result<KeyInfo> {
        let delay = activate_in.unwrap_or(self.settings.key_publish_ahead);
        if !(0..=MAX_ACTIVATE_IN).contains(&delay) {
            return Err(Error::invalid(
                "activate_in",
                "must be between 0 and 365 days",
            ));
        }
        let now = self.now();
        let activates_at = now.saturating_add(delay);
        let algorithm = algorithm.unwrap_or(self.settings.key_algorithm);
        let (kid, activates_at) = key_store::add_key(
            &*self.store,
            &self.kek,
            algorithm,
            now,
            activates_at,
            AddKeyIf::Always,
            &caller.name,
        )
        .await?
        .ok_or_else(|| Error::Internal("new signing key was not added".into()))?;
        self.key_rotated(&kid, algorithm, activates_at, &caller.name)
            .await?;
        self.list_signing_keys()
            .await?
            .into_iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| Error::Internal("new signing key not found".into()))
    }

    /// Rotates when the newest key has been signing for
    /// `keys.rotation_interval`. Replicas may all call this: one adds a key.
    pub async fn rotate_if_due(&self) -> Result<Option<String>> {
        if self.settings.key_rotation_interval <= 0 {
            return Ok(None);
        }
        let now = self.now();
        let due_before = now - self.settings.key_rotation_interval;
        // Cheap check first: generating and sealing a key every minute on
        // every replica for nothing would be waste.
        if self
            .store
            .newest_key_activation()
            .await?
            .is_some_and(|newest| newest >= due_before)
        {
            return Ok(None);
        }
        let activates_at = now + self.settings.key_publish_ahead;
        let algorithm = self.settings.key_algorithm;
        let added = key_store::add_key(
            &*self.store,
            &self.kek,
            algorithm,
            now,
            activates_at,
            AddKeyIf::NewestActivatedBefore(due_before),
            "schedule",
        )
        .await?;
        let Some((kid, activates_at)) = added else {
            return Ok(None);
        };
        self.key_rotated(&kid, algorithm, activates_at, "schedule")
            .await?;
        Ok(Some(kid))
    }

    pub(super) async fn key_rotated(
        &self,
        kid: &str,
        algorithm: KeyAlgorithm,
        activates_at: Millis,
        by: &str,
    ) -> Result<()> {
        tracing::info!(%kid, %algorithm, activates_at, %by, "signing key added");
        self.reload_keys_if_changed().await
    }

    /// Every stored key with its status at the current time, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<KeyInfo>> {
        let now = self.now();
        let mut active_seen = false;
        Ok(self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .map(|k| {
                let status = if k.withdrawn_at.is_some() {
                    KeyStatus::Withdrawn
                } else if k.activates_at > now {
                    KeyStatus::Pending
                } else if !active_seen {
                    active_seen = true;
                    KeyStatus::Active
                } else {
                    KeyStatus::Retired
                };
                KeyInfo {
                    verifies_until: k
                        .retired_at
                        .filter(|_| k.withdrawn_at.is_none())
                        .map(|at| at + self.settings.access_ttl + REVOCATION_MARGIN),
                    withdrawn_at: k.withdrawn_at,
                    kid: k.kid,
                    algorithm: k.algorithm,
                    status,
                    created_at: k.created_at,
                    activates_at: k.activates_at,
                    retired_at: k.retired_at,
                }
            })
            .collect())
    }

    /// Mints the access token for a session and pairs it with `refresh`.
    /// The token is bound to the session's certificate, or, for an unbound
    /// session, to `bound_to` (a refresh's own binding) if given.
    pub(super) fn token_pair(
        &self,
        row: &Session,
        refresh: &RefreshToken,
        now: Millis,
        bound_to: Option<&str>,
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
            // The issuer's, not the refresher's: stored with the session.
            client_id: row.client_id.clone(),
            act: None,
            cnf: row
                .certificate_thumbprint
                .as_deref()
                .or(bound_to)
                .map(Confirmation::new),
            extra,
        };
        Ok(TokenPair {
            access_token: self.sign_access_token(&claims, now)?,
            access_token_expires_at: claims.exp * 1000,
            refresh_token: refresh.as_str().to_owned(),
            refresh_token_expires_at: row.ends_at(),
            session_id: row.id.clone(),
            scope: claims.scope,
        })
    }

    /// Signs access-token claims with the key that signs at `now`.
    pub(super) fn sign_access_token(&self, claims: &AccessClaims, now: Millis) -> Result<String> {
        let keys = self.current_keys();
        let verifying = self.validator.keys();
        let key = match keys.signing_at(now, |kid| verifying.is_withdrawn(kid)) {
            Some(key) => key,
            // Withdrawn here, and the reload that brings its successor
            // failed (the database went away): the next sync brings it.
            None if !keys.is_empty() => {
                return Err(Error::Unavailable(StorageError::unavailable(
                    "the signing key was withdrawn and its successor is not loaded yet",
                )))
            }
            None => return Err(Error::Internal("no signing key".into())),
        };
        access_token::sign(key, claims)
    }
}
