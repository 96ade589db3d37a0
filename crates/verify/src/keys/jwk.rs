//! Public keys as JSON Web Keys (RFC 7517, RFC 8037 for Ed25519).
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{KeyAlgorithm, PublicKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// A JWK Set document (`/.well-known/jwks.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl From<&PublicKey> for Jwk {
    fn from(k: &PublicKey) -> Self {
        let (kty, crv, x, y) = match k.algorithm {
            KeyAlgorithm::EdDsa => ("OKP", "Ed25519", URL_SAFE_NO_PAD.encode(&k.key), None),
            KeyAlgorithm::Es256 => {
                // Uncompressed point: 0x04 ‖ x (32 bytes) ‖ y (32 bytes).
                let coordinates = k.key.get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                (
                    "EC",
                    "P-256",
                    URL_SAFE_NO_PAD.encode(x),
                    Some(URL_SAFE_NO_PAD.encode(y)),
                )
            }
        };
        Jwk {
            kty: kty.into(),
            crv: crv.into(),
            x,
            y,
            kid: k.kid.clone(),
            alg: k.algorithm.as_str().into(),
            use_: "sig".into(),
        }
    }
}

impl Jwk {
    /// The key this JWK describes, if it is one we can verify with.
    pub fn to_public_key(&self) -> Option<PublicKey> {
        let algorithm = KeyAlgorithm::parse(&self.alg)?;
        let x = URL_SAFE_NO_PAD.decode(&self.x).ok()?;
        let key = match (algorithm, self.kty.as_str(), self.crv.as_str()) {
            (KeyAlgorithm::EdDsa, "OKP", "Ed25519") => x,
            (KeyAlgorithm::Es256, "EC", "P-256") => {
                let y = URL_SAFE_NO_PAD.decode(self.y.as_deref()?).ok()?;
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                point
            }
            _ => return None,
        };
        let key = PublicKey {
            kid: self.kid.clone(),
            algorithm,
            key,
        };
        (!self.kid.is_empty() && key.is_well_formed()).then_some(key)
    }
}

impl JwkSet {
    pub fn of(keys: &[PublicKey]) -> Self {
        JwkSet {
            keys: keys.iter().map(Jwk::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate;

    #[test]
    fn both_algorithms_round_trip_through_jwk() {
        for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let generated = generate(algorithm).unwrap();
            let public = PublicKey {
                kid: generated.kid.clone(),
                algorithm,
                key: generated.public_key.clone(),
            };
            let jwk = Jwk::from(&public);
            assert_eq!(jwk.to_public_key(), Some(public), "{algorithm}");
        }
    }

    #[test]
    fn malformed_jwks_are_refused() {
        let generated = generate(KeyAlgorithm::Es256).unwrap();
        let mut jwk = Jwk::from(&PublicKey {
            kid: "k".into(),
            algorithm: KeyAlgorithm::Es256,
            key: generated.public_key,
        });
        jwk.y = None;
        assert!(jwk.to_public_key().is_none());
        jwk.alg = "HS256".into();
        assert!(jwk.to_public_key().is_none());
    }
}
