use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::KeyAlgorithm;
use crate::access_token::TOKEN_TYPE;
use crate::error::{Error, Result};

/// A private key, parsed once. (jsonwebtoken's `encode` re-parses a PKCS#8
/// key on every call, which costs a second scalar multiplication per token:
/// ~15% of the server's CPU under refresh load.) `Debug` shows the kid only.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pair: Pair,
    /// base64url of the JOSE header `{"typ":"at+jwt","alg":…,"kid":…}`.
    pub encoded_header: String,
    rng: SystemRandom,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn from_pkcs8(kid: &str, algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<Self> {
        let unparsable = || Error::KeyStore(format!("private key {kid} does not parse"));
        let rng = SystemRandom::new();
        let pair = match algorithm {
            KeyAlgorithm::EdDsa => Pair::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| unparsable())?,
            ),
            KeyAlgorithm::Es256 => Pair::P256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map_err(|_| unparsable())?,
            ),
        };
        let header =
            serde_json::json!({ "typ": TOKEN_TYPE, "alg": algorithm.as_str(), "kid": kid });
        Ok(Self {
            kid: kid.to_owned(),
            algorithm,
            pair,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            rng,
        })
    }

    /// The JWS signature of `message` (for ES256 the fixed-size r ‖ s form).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        Ok(match &self.pair {
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::P256(pair) => pair
                .sign(&self.rng, message)
                .map_err(|_| Error::Internal("ES256 signing failed".into()))?
                .as_ref()
                .to_vec(),
        })
    }

    pub fn public_key(&self) -> &[u8] {
        match &self.pair {
            Pair::Ed25519(pair) => pair.public_key().as_ref(),
            Pair::P256(pair) => pair.public_key().as_ref(),
        }
    }
}
