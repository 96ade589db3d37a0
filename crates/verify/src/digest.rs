//! SHA-256 of a token: how refresh tokens are stored and verified access
//! tokens are cached, so that no other string can stand in for a token.
use ring::digest;

pub type TokenDigest = [u8; 32];

pub fn digest_of(token: &str) -> TokenDigest {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
