use std::collections::HashMap;

use jsonwebtoken::{DecodingKey, Validation};

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

pub struct VerifyingKey {
    pub algorithm: jsonwebtoken::Algorithm,
    pub key: DecodingKey,
    /// Prepared once: signature only; claims are checked by the domain
    /// against its own clock.
    pub validation: Validation,
}

/// Every key whose tokens may still be alive, by kid.
#[derive(Default)]
pub struct VerifyingKeys {
    by_kid: HashMap<String, VerifyingKey>,
    public: Vec<PublicKey>,
}

impl VerifyingKeys {
    pub fn new(public: Vec<PublicKey>) -> Self {
        let by_kid = public
            .iter()
            .map(|k| {
                let algorithm = k.algorithm.jwt();
                let mut validation = Validation::new(algorithm);
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.validate_aud = false;
                validation.required_spec_claims.clear();
                // jsonwebtoken's "DER" constructors take the raw key ring verifies with.
                let key = match k.algorithm {
                    KeyAlgorithm::EdDsa => DecodingKey::from_ed_der(&k.key),
                    KeyAlgorithm::Es256 => DecodingKey::from_ec_der(&k.key),
                };
                let verifying = VerifyingKey {
                    algorithm,
                    key,
                    validation,
                };
                (k.kid.clone(), verifying)
            })
            .collect();
        Self { by_kid, public }
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
