//! The authority's keys and secrets in the database: sealed under the KEK
//! on the way in, opened on the way out. Plain-text values written by a
//! version before sealing existed are sealed in place at start.
use std::collections::BTreeMap;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::keys::kek::{self, IfMissing, KekOrigin, KekSources};
use crate::keys::{
    generate, is_sealed, sealed_by, Kek, KekRing, KeyAlgorithm, KeySet, KeyVersion, SealError,
    SigningKey, SigningWindow,
};
use crate::ports::{AddKeyIf, KeyStore, StoredKey};

/// Name of the server secret the refresh-token keys derive from.
const REFRESH_SECRET: &str = "refresh_token_root_v1";

pub(crate) fn key_label(kid: &str) -> String {
    format!("signing_key/{kid}")
}

pub(crate) fn secret_label(name: &str) -> String {
    format!("server_secret/{name}")
}

pub(crate) fn sealing_failed(what: &str, e: SealError) -> Error {
    Error::KeyStore(format!("cannot decrypt {what}: {e}"))
}

/// Loads the KEKs for `store` (the current one from the environment, a
/// command or `keys.kek_file`, generated only if nothing in the database
/// is sealed yet; the previous one if configured). Refuses if a stored
/// value is sealed under a KEK neither of them is.
pub async fn load_kek_ring(store: &dyn KeyStore, sources: &KekSources) -> Result<KekRing> {
    let sealed = sealed_counts(store).await?;
    let if_missing = match sealed.keys().next() {
        None => IfMissing::Generate,
        Some(id) => IfMissing::Refuse(Some(id)),
    };
    let (current, origin) = kek::load(sources, if_missing).await?;
    let previous = kek::load_previous(sources).await?;
    if let Some((previous, _)) = &previous {
        if previous.id() == current.id() {
            tracing::warn!(kek_id = %current.id(), "the previous key-encryption key is the current one");
        } else {
            tracing::info!(kek_id = %previous.id(), "previous key-encryption key loaded: values sealed under it still open");
        }
    }
    let ring = KekRing::new(current, previous.map(|(kek, _)| kek));
    ring.check_holds_all(&sealed).map_err(|e| {
        Error::KeyStore(format!(
            "the database's keys and secrets cannot all be decrypted: {e}; refusing to start"
        ))
    })?;
    tracing::info!(kek_id = %ring.current().id(), origin = ?origin, "key-encryption key loaded");
    if matches!(origin, KekOrigin::Generated(_)) {
        tracing::info!("new key-encryption key: signing keys and secrets will be sealed under it");
    }
    Ok(ring)
}

/// How many stored values each KEK seals (by KEK id). Empty private halves
/// (withdrawn keys) and plain-text values of older versions count for none.
pub async fn sealed_counts(store: &dyn KeyStore) -> Result<BTreeMap<String, u64>> {
    let keys = store.signing_keys().await?;
    let secrets = store.secret_values().await?;
    let mut counts = BTreeMap::new();
    for id in keys
        .iter()
        .map(|k| k.private_key.as_slice())
        .chain(secrets.iter().map(Vec::as_slice))
        .filter_map(sealed_by)
    {
        *counts.entry(id).or_default() += 1;
    }
    Ok(counts)
}

/// The KEK to seal a new value under now (see [`KekRing::for_new_values`]).
pub async fn sealing_kek<'r>(store: &dyn KeyStore, ring: &'r KekRing) -> Result<&'r Kek> {
    Ok(ring.for_new_values(&sealed_counts(store).await?))
}

/// Opens every stored key into a key set, sealing plain-text ones in place.
pub async fn load_key_set(store: &dyn KeyStore, ring: &KekRing) -> Result<KeySet> {
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
            ring.open(&label, &key.private_key)
                .map_err(|e| sealing_failed(&format!("signing key {}", key.kid), e))?
        } else {
            let sealed = sealing_kek(store, ring)
                .await?
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
    ring: &KekRing,
    algorithm: KeyAlgorithm,
    now: Millis,
    activates_at: Millis,
    condition: AddKeyIf,
    by: &str,
) -> Result<Option<(String, Millis)>> {
    let kek = sealing_kek(store, ring).await?;
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
    ring: &KekRing,
    now: Millis,
) -> Result<Zeroizing<Vec<u8>>> {
    let kek = sealing_kek(store, ring).await?;
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
        return ring
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
