//! Per-service bearer keys. A key is `tak_` + base64url(32 random bytes);
//! the configuration holds only its SHA-256 (hex), so a leaked config file
//! grants nothing.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

pub const KEY_PREFIX: &str = "tak_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BearerKeyDigest(pub [u8; 32]);

impl BearerKeyDigest {
    pub fn of(key: &str) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A new random bearer key and the digest to put in the configuration.
pub fn new_bearer_key() -> Result<(String, BearerKeyDigest), ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let digest = BearerKeyDigest::of(&key);
    Ok((key, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_through_hex() {
        let (key, digest) = new_bearer_key().unwrap();
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(BearerKeyDigest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(BearerKeyDigest::of(&key), digest);
        assert_eq!(BearerKeyDigest::from_hex("zz"), None);
        assert_eq!(BearerKeyDigest::from_hex(&"é".repeat(32)), None);
    }
}
