//! Self-authenticating refresh tokens.
//!
//! A token is `rt1_` + base64url(session id ‖ generation ‖ secret ‖ MAC), the
//! MAC being HMAC-SHA256 over the first three parts under a server key. So:
//! - a forged or garbled token is rejected before any database access, and
//!   cannot be used to revoke somebody else's session;
//! - a genuine token names its session and generation, so a replay of any
//!   older generation is recognised without storing old tokens;
//! - the successor of a token is derived from it under a second server key,
//!   so every concurrent refresh of the same token computes the same successor.
//!
//! The database stores only SHA-256 digests of tokens.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

use crate::error::{Error, Result};
pub use token_authority_verify::digest::{digest_of, TokenDigest};

const PREFIX: &str = "rt1_";
const SECRET_LEN: usize = 32;
const MAC_LEN: usize = 32;
const BODY_LEN: usize = 16 + 8 + SECRET_LEN;
const RAW_LEN: usize = BODY_LEN + MAC_LEN;
/// Exact length of an encoded token.
pub const TOKEN_LEN: usize = PREFIX.len() + (RAW_LEN * 4).div_ceil(3);

/// A refresh token whose MAC checked out. `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub session_id: Uuid,
    pub generation: u64,
    encoded: String,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("session_id", &self.session_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl RefreshToken {
    pub fn as_str(&self) -> &str {
        &self.encoded
    }

    pub fn digest(&self) -> TokenDigest {
        digest_of(&self.encoded)
    }
}

/// Mints, checks and derives refresh tokens under the server's secret.
pub struct RefreshTokenCodec {
    mac_key: hmac::Key,
    successor_key: hmac::Key,
    rng: SystemRandom,
}

impl RefreshTokenCodec {
    /// `server_secret` is the long-lived secret shared by all replicas; the
    /// two working keys are derived from it so that neither doubles as the other.
    pub fn new(server_secret: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, server_secret);
        let derive =
            |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Self {
            mac_key: derive(b"token-authority/refresh-token/mac/v1"),
            successor_key: derive(b"token-authority/refresh-token/successor/v1"),
            rng: SystemRandom::new(),
        }
    }

    /// A fresh token with a random secret: generation 0 of a new session.
    pub fn mint(&self, session_id: Uuid) -> Result<RefreshToken> {
        let mut secret = [0u8; SECRET_LEN];
        self.rng
            .fill(&mut secret)
            .map_err(|_| Error::Internal("system random number generator failed".into()))?;
        Ok(self.assemble(session_id, 0, &secret))
    }

    /// The one token that follows `token`. Deterministic: the same input
    /// always yields the same successor.
    pub fn successor(&self, token: &RefreshToken) -> RefreshToken {
        let tag = hmac::sign(&self.successor_key, token.encoded.as_bytes());
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&tag.as_ref()[..SECRET_LEN]);
        self.assemble(token.session_id, token.generation + 1, &secret)
    }

    /// Checks format and MAC. Any failure is `TokenInvalid`, whatever the cause,
    /// so that callers learn nothing about what was wrong.
    pub fn parse(&self, token: &str) -> Result<RefreshToken> {
        if token.len() != TOKEN_LEN {
            return Err(Error::TokenInvalid);
        }
        let body = token.strip_prefix(PREFIX).ok_or(Error::TokenInvalid)?;
        let mut raw = [0u8; RAW_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(body, &mut raw)
            .map_err(|_| Error::TokenInvalid)?;
        if n != RAW_LEN {
            return Err(Error::TokenInvalid);
        }
        let (content, mac) = raw.split_at(BODY_LEN);
        hmac::verify(&self.mac_key, content, mac).map_err(|_| Error::TokenInvalid)?;
        let (sid, rest) = content.split_at(16);
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&rest[..8]);
        let mut sid_bytes = [0u8; 16];
        sid_bytes.copy_from_slice(sid);
        Ok(RefreshToken {
            session_id: Uuid::from_bytes(sid_bytes),
            generation: u64::from_be_bytes(generation),
            encoded: token.to_owned(),
        })
    }

    fn assemble(&self, session_id: Uuid, generation: u64, secret: &[u8]) -> RefreshToken {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.extend_from_slice(session_id.as_bytes());
        raw.extend_from_slice(&generation.to_be_bytes());
        raw.extend_from_slice(secret);
        let tag = hmac::sign(&self.mac_key, &raw);
        raw.extend_from_slice(tag.as_ref());
        let mut encoded = String::with_capacity(TOKEN_LEN);
        encoded.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&raw, &mut encoded);
        RefreshToken {
            session_id,
            generation,
            encoded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> RefreshTokenCodec {
        RefreshTokenCodec::new(b"test secret")
    }

    #[test]
    fn minted_token_parses_back() {
        let c = codec();
        let sid = Uuid::now_v7();
        let t = c.mint(sid).unwrap();
        assert_eq!(t.as_str().len(), TOKEN_LEN);
        let parsed = c.parse(t.as_str()).unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.session_id, sid);
        assert_eq!(parsed.generation, 0);
    }

    #[test]
    fn successor_is_deterministic_and_advances_generation() {
        let c = codec();
        let t = c.mint(Uuid::now_v7()).unwrap();
        let a = c.successor(&t);
        let b = c.successor(&c.parse(t.as_str()).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.generation, 1);
        assert_ne!(a.as_str(), t.as_str());
        assert_eq!(c.parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let c = codec();
        let t = c.mint(Uuid::now_v7()).unwrap();
        let bytes = t.as_str().as_bytes();
        for i in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(changed).unwrap();
            assert!(c.parse(&s).is_err(), "change at {i} accepted");
        }
    }

    #[test]
    fn token_of_another_server_secret_is_rejected() {
        let t = RefreshTokenCodec::new(b"other")
            .mint(Uuid::now_v7())
            .unwrap();
        assert!(matches!(
            codec().parse(t.as_str()),
            Err(Error::TokenInvalid)
        ));
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let c = codec();
        for s in [
            "",
            "rt1_",
            "x",
            &"é".repeat(TOKEN_LEN / 2),
            &"A".repeat(TOKEN_LEN),
        ] {
            assert!(c.parse(s).is_err());
        }
    }
}
