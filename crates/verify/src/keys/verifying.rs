use std::collections::{HashMap, HashSet};

use ring::signature::{UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ED25519};

use super::KeyAlgorithm;

/// The public half of a signing key: what verifies its tokens, and what is
/// published (JWKS) and streamed to sidecars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    /// Ed25519: 32 bytes; P-256: the uncompressed point (0x04 ‖ x ‖ y).
    pub key: Vec<u8>,
}

impl PublicKey {
    /// Whether the key has the shape its algorithm requires.
    pub fn is_well_formed(&self) -> bool {
        match self.algorithm {
            KeyAlgorithm::EdDsa => self.key.len() == 32,
            KeyAlgorithm::Es256 => self.key.len() == 65 && self.key[0] == 0x04,
        }
    }
}

/// A public key ready to check JWS signatures (RFC 7515 compact form).
pub struct VerifyingKey {
    pub algorithm: KeyAlgorithm,
    key: UnparsedPublicKey<Vec<u8>>,
}

impl VerifyingKey {
    fn new(public: &PublicKey) -> Self {
        // ES256 signatures in a JWS are the fixed-size r ‖ s (RFC 7518 §3.4).
        let algorithm: &'static dyn VerificationAlgorithm = match public.algorithm {
            KeyAlgorithm::EdDsa => &ED25519,
            KeyAlgorithm::Es256 => &ECDSA_P256_SHA256_FIXED,
        };
        Self {
            algorithm: public.algorithm,
            key: UnparsedPublicKey::new(algorithm, public.key.clone()),
        }
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify(message, signature).is_ok()
    }
}

/// Every key whose tokens may still be alive, by kid, and the kids of
/// withdrawn keys (refused by name, never verified with).
#[derive(Default)]
pub struct VerifyingKeys {
    by_kid: HashMap<String, VerifyingKey>,
    public: Vec<PublicKey>,
    withdrawn: HashSet<String>,
}

impl VerifyingKeys {
    pub fn new(public: Vec<PublicKey>) -> Self {
        let by_kid = public
            .iter()
            .map(|k| (k.kid.clone(), VerifyingKey::new(k)))
            .collect();
        Self {
            by_kid,
            public,
            withdrawn: HashSet::new(),
        }
    }

    /// These keys less the `withdrawn` ones, which are then refused by name.
    pub fn without(public: Vec<PublicKey>, withdrawn: &HashSet<String>) -> Self {
        let kept = public
            .into_iter()
            .filter(|k| !withdrawn.contains(&k.kid))
            .collect();
        Self {
            withdrawn: withdrawn.clone(),
            ..Self::new(kept)
        }
    }

    pub fn is_withdrawn(&self, kid: &str) -> bool {
        self.withdrawn.contains(kid)
    }

    /// The kids refused by name.
    pub fn withdrawn(&self) -> &HashSet<String> {
        &self.withdrawn
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.by_kid.get(kid)
    }

    /// The keys in the order they were given (newest first from the store).
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public
    }

    pub fn contains_all_of(&self, other: &VerifyingKeys) -> bool {
        other.by_kid.keys().all(|kid| self.by_kid.contains_key(kid))
    }
}
