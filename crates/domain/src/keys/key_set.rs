use std::collections::HashSet;
use std::sync::Arc;

use super::{PublicKey, SigningKey, VerifyingKeys};
use crate::clock::Millis;

/// When a stored key signs: from `activates_at` until a newer key activates
/// (its `retired_at`). What tells whether the stored set has changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub kid: String,
    pub activates_at: Millis,
    pub retired_at: Option<Millis>,
    pub withdrawn_at: Option<Millis>,
}

pub struct SigningWindow {
    pub activates_at: Millis,
    pub key: SigningKey,
}

/// The authority's keys: which one signs at a given time, and the public
/// halves of all of them (pending ones included, so that every replica and
/// sidecar knows a key before any token carries it). Withdrawn keys are
/// only named: `signers` never holds one.
pub struct KeySet {
    /// Newest activation first.
    signers: Vec<SigningWindow>,
    verifying: Arc<VerifyingKeys>,
    versions: Vec<KeyVersion>,
}

impl KeySet {
    pub fn new(mut signers: Vec<SigningWindow>, mut versions: Vec<KeyVersion>) -> Self {
        signers.sort_by_key(|w| std::cmp::Reverse(w.activates_at));
        versions.sort_by(|a, b| a.kid.cmp(&b.kid));
        let withdrawn: HashSet<String> = versions
            .iter()
            .filter(|v| v.withdrawn_at.is_some())
            .map(|v| v.kid.clone())
            .collect();
        signers.retain(|w| !withdrawn.contains(&w.key.kid));
        let public = signers
            .iter()
            .map(|w| PublicKey {
                kid: w.key.kid.clone(),
                algorithm: w.key.algorithm,
                key: w.key.public_key().to_vec(),
            })
            .collect();
        Self {
            signers,
            verifying: Arc::new(VerifyingKeys::without(public, &withdrawn)),
            versions,
        }
    }

    /// The key that signs at `now`: the one activated last. Before any key
    /// is active (a clock far behind), the earliest one.
    /// Keys `withdrawn` meanwhile (known before this set was reloaded) are
    /// passed over.
    pub fn signing_at(&self, now: Millis, withdrawn: impl Fn(&str) -> bool) -> Option<&SigningKey> {
        let usable = || self.signers.iter().filter(|w| !withdrawn(&w.key.kid));
        usable()
            .find(|w| w.activates_at <= now)
            .or_else(|| usable().last())
            .map(|w| &w.key)
    }

    pub fn verifying(&self) -> Arc<VerifyingKeys> {
        self.verifying.clone()
    }

    /// Whether this set was built from exactly these stored versions.
    pub fn matches(&self, versions: &[KeyVersion]) -> bool {
        let mut sorted = versions.to_vec();
        sorted.sort_by(|a, b| a.kid.cmp(&b.kid));
        self.versions == sorted
    }

    /// The kids of withdrawn keys still stored.
    pub fn withdrawn(&self) -> Vec<String> {
        self.versions
            .iter()
            .filter(|v| v.withdrawn_at.is_some())
            .map(|v| v.kid.clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }
}
