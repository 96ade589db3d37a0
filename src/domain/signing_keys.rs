//! The keys that sign and verify access tokens, held in memory.
use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::access_token::TOKEN_TYPE;
use super::error::{Error, Result};
use crate::storage::keys::StoredKey;

pub const EDDSA: &str = "EdDSA";

/// A new Ed25519 key pair, generated with ring, ready to store.
pub fn generate_ed25519(now: i64) -> Result<StoredKey> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| Error::Internal("Ed25519 key generation failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| Error::Internal("generated Ed25519 key does not parse".into()))?;
    let public_key = pair.public_key().as_ref().to_vec();
    Ok(StoredKey {
        kid: key_id(&public_key),
        algorithm: EDDSA.into(),
        private_key: pkcs8.as_ref().to_vec(),
        public_key,
        created_at: now,
        retired_at: None,
    })
}

/// `kid`: a short, stable fingerprint of the public key.
fn key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}

/// The key that signs, parsed once. (jsonwebtoken's `encode` re-parses a
/// PKCS#8 Ed25519 key on every call, which costs a second scalar
/// multiplication per token: ~15% of the server's CPU under refresh load.)
pub struct SigningKey {
    pub kid: String,
    pub pair: Ed25519KeyPair,
    /// base64url of the JOSE header `{"typ":"at+jwt","alg":"EdDSA","kid":…}`.
    pub encoded_header: String,
}

pub struct VerifyingKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// Prepared once: signature only; claims are checked by the domain
    /// against its own clock.
    pub validation: Validation,
}

/// The current signing key and every key whose tokens may still be alive.
pub struct KeyRing {
    signing: SigningKey,
    verifying: HashMap<String, VerifyingKey>,
    /// (kid, retired) of every key the ring was built from, to tell whether
    /// the stored set has changed.
    fingerprint: Vec<(String, bool)>,
}

impl KeyRing {
    /// Builds the ring from stored keys, newest first; the newest unretired
    /// key signs. Returns `None` when there is no usable signing key.
    pub fn from_stored(keys: &[StoredKey]) -> Result<Option<Self>> {
        let mut verifying = HashMap::new();
        let mut signing = None;
        for stored in keys {
            let algorithm = parse_algorithm(&stored.algorithm)?;
            let mut validation = Validation::new(algorithm);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            verifying.insert(
                stored.kid.clone(),
                VerifyingKey {
                    algorithm,
                    key: DecodingKey::from_ed_der(&stored.public_key),
                    validation,
                },
            );
            if signing.is_none() && stored.retired_at.is_none() {
                signing = Some(signing_key(stored)?);
            }
        }
        let fingerprint = fingerprint(keys);
        Ok(signing.map(|signing| Self {
            signing,
            verifying,
            fingerprint,
        }))
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifying(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.get(kid)
    }

    /// Whether the ring was built from exactly these stored keys.
    pub fn matches(&self, keys: &[StoredKey]) -> bool {
        self.fingerprint == fingerprint(keys)
    }
}

fn fingerprint(keys: &[StoredKey]) -> Vec<(String, bool)> {
    keys.iter()
        .map(|k| (k.kid.clone(), k.retired_at.is_some()))
        .collect()
}

fn signing_key(stored: &StoredKey) -> Result<SigningKey> {
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&stored.private_key).map_err(|_| {
        Error::Internal(format!("stored signing key {} does not parse", stored.kid))
    })?;
    let header = serde_json::json!({ "typ": TOKEN_TYPE, "alg": EDDSA, "kid": stored.kid });
    Ok(SigningKey {
        kid: stored.kid.clone(),
        pair,
        encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
    })
}

fn parse_algorithm(name: &str) -> Result<Algorithm> {
    match name {
        EDDSA => Ok(Algorithm::EdDSA),
        other => Err(Error::Internal(format!(
            "stored signing key uses unsupported algorithm {other}"
        ))),
    }
}
