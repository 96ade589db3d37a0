//! The authority's keys and secrets in the database: sealed under the KEK
//! on the way in, opened on the way out. Plain-text values written by a
//! version before sealing existed are sealed in place at start.
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::keys::kek::{self, KekOrigin};
use crate::keys::{
    generate, is_sealed, sealed_by, Kek, KeyAlgorithm, KeySet, KeyVersion, SealError, SigningKey,
    SigningWindow,
};
use crate::ports::{AddKeyIf, KeyStore, StoredKey};

/// Name of the server secret the refresh-token keys derive from.
const REFRESH_SECRET: &str = "refresh_token_root_v1";

fn key_label(kid: &str) -> String {
    format!("signing_key/{kid}")
}

fn secret_label(name: &str) -> String {
    format!("server_secret/{name}")
}

fn sealing_failed(what: &str, e: SealError) -> Error {
    Error::KeyStore(format!("cannot decrypt {what}: {e}"))
}

/// Loads the KEK for `store`: from the environment or `kek_file`, generated
/// only if nothing in the database is sealed yet.
pub async fn load_kek(store: &dyn KeyStore, kek_file: Option<&Path>) -> Result<Kek> {
    let sealed_under = sealed_under(store).await?;
    let (kek, origin) = kek::load(kek_file, sealed_under.as_deref())?;
    if let Some(id) = sealed_under.filter(|id| *id != kek.id()) {
        return Err(Error::KeyStore(format!(
            "the database's keys are sealed under key-encryption key {id}, but the configured one is {} ({origin:?}); refusing to start",
            kek.id()
        )));
    }
    tracing::info!(kek_id = %kek.id(), origin = ?origin, "key-encryption key loaded");
    if matches!(origin, KekOrigin::Generated(_)) {
        tracing::info!("new key-encryption key: signing keys and secrets will be sealed under it");
    }
    Ok(kek)
}

/// The id of the KEK the stored keys and secrets are sealed under, if any.
async fn sealed_under(store: &dyn KeyStore) -> Result<Option<String>> {
    let keys = store.signing_keys().await?;
    let secrets = store.secret_values().await?;
    Ok(keys
        .iter()
        .map(|k| k.private_key.as_slice())
        .chain(secrets.iter().map(Vec::as_slice))
        .find_map(sealed_by))
}

/// Opens every stored key into a key set, sealing plain-text ones in place.
pub async fn load_key_set(store: &dyn KeyStore, kek: &Kek) -> Result<KeySet> {
    let stored = store.signing_keys().await?;
    let mut signers = Vec::with_capacity(stored.len());
    let mut versions = Vec::with_capacity(stored.len());
    for key in stored {
        if key.withdrawn_at.is_some() {
            // Its private half is wiped; the set only names it.
            versions.push(KeyVersion {
                kid: key.kid,
                activates_at: key.activates_at,
                retired_at: key.retired_at,
                withdrawn_at: key.withdrawn_at,
            });
            continue;
        }
        let algorithm = KeyAlgorithm::parse(&key.algorithm).ok_or_else(|| {
            Error::KeyStore(format!(
                "key {} uses unsupported algorithm {}",
                key.kid, key.algorithm
            ))
        })?;
        let label = key_label(&key.kid);
        let pkcs8 = if is_sealed(&key.private_key) {
            kek.open(&label, &key.private_key)
                .map_err(|e| sealing_failed(&format!("signing key {}", key.kid), e))?
        } else {
            let sealed = kek
                .seal(&label, &key.private_key)
                .map_err(|e| Error::KeyStore(e.to_string()))?;
            store.replace_private_key(&key.kid, sealed).await?;
            tracing::info!(kid = %key.kid, "sealed a signing key stored in plain text by an older version");
            Zeroizing::new(key.private_key.clone())
        };
        signers.push(SigningWindow {
            activates_at: key.activates_at,
            key: SigningKey::from_pkcs8(&key.kid, algorithm, &pkcs8)?,
        });
        versions.push(KeyVersion {
            kid: key.kid,
            activates_at: key.activates_at,
            retired_at: key.retired_at,
            withdrawn_at: None,
        });
    }
    Ok(KeySet::new(signers, versions))
}

/// A freshly generated key, sealed and ready to store.
pub fn new_stored_key(
    kek: &Kek,
    algorithm: KeyAlgorithm,
    now: Millis,
    activates_at: Millis,
) -> Result<StoredKey> {
    let generated = generate(algorithm)?;
    let private_key = kek
        .seal(&key_label(&generated.kid), &generated.pkcs8)
        .map_err(|e| Error::KeyStore(e.to_string()))?;
    Ok(StoredKey {
        kid: generated.kid,
        algorithm: algorithm.as_str().into(),
        private_key,
        public_key: generated.public_key,
        created_at: now,
        retired_at: None,
        activates_at,
        withdrawn_at: None,
    })
}

/// Adds a key when `condition` holds, audited as added by `by`; returns
/// its kid and activation time if it was added.
pub async fn add_key(
    store: &dyn KeyStore,
    kek: &Kek,
    algorithm: KeyAlgorithm,
    now: Millis,
    activates_at: Millis,
    condition: AddKeyIf,
    by: &str,
) -> Result<Option<(String, Millis)>> {
    let key = new_stored_key(kek, algorithm, now, activates_at)?;
    let kid = key.kid.clone();
    Ok(store
        .add_signing_key(key, condition, by)
        .await?
        .map(|activates_at| (kid, activates_at)))
}

/// The refresh-token root secret, created on first start; sealed at rest.
pub async fn refresh_secret(
    store: &dyn KeyStore,
    kek: &Kek,
    now: Millis,
) -> Result<Zeroizing<Vec<u8>>> {
    let label = secret_label(REFRESH_SECRET);
    let mut candidate = Zeroizing::new(vec![0u8; 32]);
    SystemRandom::new()
        .fill(&mut candidate)
        .map_err(|_| Error::Internal("system random number generator failed".into()))?;
    let sealed = kek
        .seal(&label, &candidate)
        .map_err(|e| Error::KeyStore(e.to_string()))?;
    let stored = store.secret_or_insert(REFRESH_SECRET, sealed, now).await?;
    if is_sealed(&stored) {
        return kek
            .open(&label, &stored)
            .map_err(|e| sealing_failed("the refresh-token secret", e));
    }
    let resealed = kek
        .seal(&label, &stored)
        .map_err(|e| Error::KeyStore(e.to_string()))?;
    store
        .replace_secret(REFRESH_SECRET, &stored, resealed)
        .await?;
    tracing::info!("sealed the refresh-token secret stored in plain text by an older version");
    Ok(Zeroizing::new(stored))
}
