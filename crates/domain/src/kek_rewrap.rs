//! `keys rewrap`: every stored signing key and secret re-sealed under one
//! KEK in one transaction, so that the KEK it replaces can be dropped.
use std::collections::BTreeMap;

use token_authority_verify::clock::Millis;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key_store::{key_label, sealed_counts, sealing_failed, secret_label};
use crate::keys::{is_sealed, sealed_by, KekRing};
use crate::ports::{KeyStore, Resealed, RewrapAudit, SealedRow};

/// What a rewrap did, and what the database holds after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    pub resealed: Resealed,
    pub target_kek_id: String,
    /// Sealed values per KEK id, read back after the commit.
    pub sealed_counts: BTreeMap<String, u64>,
    /// The KEKs the rewrap held besides the target.
    pub replaced_kek_ids: Vec<String>,
}

impl RewrapReport {
    /// KEKs other than the target that still seal values, with how many
    /// (a key added under one while the rewrap ran).
    pub fn still_used(&self) -> Vec<(&str, u64)> {
        self.sealed_counts
            .iter()
            .filter(|(id, _)| **id != self.target_kek_id)
            .map(|(id, n)| (id.as_str(), *n))
            .collect()
    }

    /// Replaced KEKs that seal nothing any more: safe to remove.
    pub fn unused(&self) -> Vec<&str> {
        self.replaced_kek_ids
            .iter()
            .filter(|id| !self.sealed_counts.contains_key(*id))
            .map(String::as_str)
            .collect()
    }
}

/// Re-seals every stored value under `ring`'s current KEK (opened with
/// whichever KEK of the ring it names), audited as done by `by`. Empty
/// private halves (withdrawn keys) and values already under the target
/// are left as they are; plain-text values of older versions are sealed.
pub async fn rewrap(
    store: &dyn KeyStore,
    ring: &KekRing,
    now: Millis,
    by: &str,
) -> Result<RewrapReport> {
    ring.check_holds_all(&sealed_counts(store).await?)
        .map_err(|e| Error::KeyStore(format!("cannot rewrap: {e}")))?;
    let target = ring.current();
    let target_kek_id = target.id();
    let reseal = |row: SealedRow<'_>, value: &[u8]| -> Result<Option<Vec<u8>>> {
        if value.is_empty() || sealed_by(value).as_deref() == Some(target_kek_id.as_str()) {
            return Ok(None);
        }
        let (label, what) = match row {
            SealedRow::SigningKey { kid } => (key_label(kid), format!("signing key {kid}")),
            SealedRow::Secret { name } => (secret_label(name), format!("secret {name}")),
        };
        let plaintext = if is_sealed(value) {
            ring.open(&label, value)
                .map_err(|e| sealing_failed(&what, e))?
        } else {
            Zeroizing::new(value.to_vec())
        };
        target
            .seal(&label, &plaintext)
            .map(Some)
            .map_err(|e| Error::KeyStore(format!("sealing {what}: {e}")))
    };
    let audit = RewrapAudit {
        at: now,
        by,
        target_kek_id: &target_kek_id,
    };
    let resealed = store.reseal_all(&reseal, audit).await?;
    tracing::info!(
        kek_id = %target_kek_id,
        keys = resealed.keys,
        secrets = resealed.secrets,
        "re-sealed stored keys and secrets"
    );
    Ok(RewrapReport {
        resealed,
        sealed_counts: sealed_counts(store).await?,
        replaced_kek_ids: ring
            .ids()
            .into_iter()
            .filter(|id| *id != target_kek_id)
            .collect(),
        target_kek_id,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::AuditKind;
    use crate::keys::{Kek, KEK_LEN};
    use crate::memory_store::MemoryStore;
    use crate::ports::StoredKey;

    fn kek(byte: u8) -> Kek {
        Kek::new(&[byte; KEK_LEN]).unwrap()
    }

    fn stored(kid: &str, private_key: Vec<u8>) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            algorithm: "EdDSA".into(),
            private_key,
            public_key: vec![1],
            created_at: 0,
            retired_at: None,
            activates_at: 0,
            withdrawn_at: None,
        }
    }

    async fn store_under_old() -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::new());
        let old = kek(1);
        for kid in ["a", "b"] {
            let sealed = old.seal(&key_label(kid), kid.as_bytes()).unwrap();
            store
                .add_signing_key(stored(kid, sealed), crate::ports::AddKeyIf::Always, "t")
                .await
                .unwrap();
        }
        store
            .add_signing_key(
                stored("withdrawn", Vec::new()),
                crate::ports::AddKeyIf::Always,
                "t",
            )
            .await
            .unwrap();
        let secret = old.seal(&secret_label("s"), b"root").unwrap();
        store.secret_or_insert("s", secret, 0).await.unwrap();
        store
    }

    #[tokio::test]
    async fn everything_moves_to_the_target_once() {
        let store = store_under_old().await;
        let ring = KekRing::new(kek(2), [kek(1)]);
        let report = rewrap(&*store, &ring, 5, "cli:ops").await.unwrap();
        assert_eq!(
            report.resealed,
            Resealed {
                keys: 2,
                secrets: 1
            }
        );
        assert_eq!(report.sealed_counts, BTreeMap::from([(kek(2).id(), 3)]));
        assert_eq!(report.unused(), [kek(1).id()]);
        assert!(report.still_used().is_empty());
        for key in store.signing_keys().await.unwrap() {
            if key.kid == "withdrawn" {
                assert!(key.private_key.is_empty());
                continue;
            }
            let opened = kek(2).open(&key_label(&key.kid), &key.private_key).unwrap();
            assert_eq!(opened.as_slice(), key.kid.as_bytes());
        }
        let again = rewrap(&*store, &ring, 6, "cli:ops").await.unwrap();
        assert_eq!(again.resealed, Resealed::default());
        assert_eq!(again.sealed_counts, report.sealed_counts);
        let events = store.audit_events_of_kind(AuditKind::KekRewrapped);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].subject, "cli:ops");
        assert!(events[0].detail.as_deref().unwrap().contains(&kek(2).id()));
    }

    #[tokio::test]
    async fn a_value_under_a_kek_not_held_changes_nothing() {
        let store = store_under_old().await;
        let stranger = kek(3).seal(&key_label("c"), b"c").unwrap();
        store
            .add_signing_key(stored("c", stranger), crate::ports::AddKeyIf::Always, "t")
            .await
            .unwrap();
        let before = sealed_counts(&*store).await.unwrap();
        let ring = KekRing::new(kek(2), [kek(1)]);
        let err = rewrap(&*store, &ring, 5, "cli:ops").await.unwrap_err();
        assert!(err.to_string().contains(&kek(3).id()), "{err}");
        assert_eq!(sealed_counts(&*store).await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_value_that_does_not_open_rolls_the_whole_rewrap_back() {
        let store = store_under_old().await;
        let mut tampered = kek(1).seal(&key_label("c"), b"c").unwrap();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        store
            .add_signing_key(stored("c", tampered), crate::ports::AddKeyIf::Always, "t")
            .await
            .unwrap();
        let ring = KekRing::new(kek(2), [kek(1)]);
        let err = rewrap(&*store, &ring, 5, "cli:ops").await.unwrap_err();
        assert!(err.to_string().contains("signing key c"), "{err}");
        let counts = sealed_counts(&*store).await.unwrap();
        assert_eq!(counts, BTreeMap::from([(kek(1).id(), 4)]));
        assert!(store
            .audit_events_of_kind(AuditKind::KekRewrapped)
            .is_empty());
    }
}
