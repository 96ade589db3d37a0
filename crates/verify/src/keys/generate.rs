use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use zeroize::Zeroizing;

use super::{KeyAlgorithm, PublicKey, SigningKey, VerifyingKeys};
use crate::error::{Error, Result};

/// A new key pair. The private half is PKCS#8 DER, wiped from memory on drop;
/// it is only ever stored sealed.
pub struct GeneratedKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pub pkcs8: Zeroizing<Vec<u8>>,
    /// Ed25519: the 32-byte key; P-256: the uncompressed point (0x04 ‖ x ‖ y).
    pub public_key: Vec<u8>,
}

pub fn generate(algorithm: KeyAlgorithm) -> Result<GeneratedKey> {
    let rng = SystemRandom::new();
    let failed = || Error::Internal(format!("{algorithm} key generation failed"));
    let (pkcs8, public_key) = match algorithm {
        KeyAlgorithm::EdDsa => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed())?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| failed())?;
            (pkcs8, pair.public_key().as_ref().to_vec())
        }
        KeyAlgorithm::Es256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| failed())?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|_| failed())?;
            (pkcs8, pair.public_key().as_ref().to_vec())
        }
    };
    Ok(GeneratedKey {
        kid: key_id(&public_key),
        algorithm,
        pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
        public_key,
    })
}

/// A key pair that lives only in memory, as signer and verifier (tools,
/// benchmarks, fuzzing; the service stores its keys sealed).
pub fn ephemeral(algorithm: KeyAlgorithm) -> Result<(SigningKey, VerifyingKeys)> {
    let key = generate(algorithm)?;
    let signer = SigningKey::from_pkcs8(&key.kid, algorithm, &key.pkcs8)?;
    let verifying = VerifyingKeys::new(vec![PublicKey {
        kid: key.kid,
        algorithm,
        key: key.public_key,
    }]);
    Ok((signer, verifying))
}

/// `kid`: a short, stable fingerprint of the public key.
fn key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}
