//! Access tokens: JWTs (RFC 9068 style, header `typ: at+jwt`).
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{decode, decode_header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::keys::{SigningKey, VerifyingKeys};
use crate::clock::Millis;

pub const TOKEN_TYPE: &str = "at+jwt";

/// Registered claims that extra claims may not override.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "tenant", "scope", "typ", "kid",
];

/// What an access token says. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// Session id.
    pub sid: String,
    pub tenant: String,
    /// Space-separated scopes (RFC 8693 `scope`).
    pub scope: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Signs a compact JWS (`header.payload.signature`, RFC 7515). Verified by
/// `verify`, i.e. by jsonwebtoken.
pub fn sign(key: &SigningKey, claims: &AccessClaims) -> Result<String> {
    let payload =
        serde_json::to_vec(claims).map_err(|e| Error::Internal(format!("encoding claims: {e}")))?;
    let mut token = String::with_capacity(key.encoded_header.len() + payload.len() * 4 / 3 + 100);
    token.push_str(&key.encoded_header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// A token whose signature checked out, with the key that signed it.
pub struct Verified {
    pub claims: AccessClaims,
    pub kid: String,
}

/// Checks signature, type, issuer and lifetime. Audience, tenant and
/// revocation are the caller's to check.
pub fn verify(
    keys: &VerifyingKeys,
    issuer: &str,
    token: &str,
    now: Millis,
    leeway: Millis,
) -> Result<Verified> {
    let header = decode_header(token).map_err(|_| Error::TokenInvalid)?;
    if header.typ.as_deref() != Some(TOKEN_TYPE) {
        return Err(Error::TokenInvalid);
    }
    let kid = header.kid.ok_or(Error::TokenInvalid)?;
    let key = keys.get(&kid).ok_or(Error::TokenInvalid)?;
    if header.alg != key.algorithm {
        return Err(Error::TokenInvalid);
    }
    let claims = decode::<AccessClaims>(token, &key.key, &key.validation)
        .map_err(|_| Error::TokenInvalid)?
        .claims;
    if claims.iss != issuer {
        return Err(Error::TokenInvalid);
    }
    check_lifetime(&claims, now, leeway)?;
    Ok(Verified { claims, kid })
}

/// `exp`, `nbf` and `iat` against the service's clock, allowing clocks to
/// differ by `leeway` (which also lets a token live that much past `exp`).
pub fn check_lifetime(claims: &AccessClaims, now: Millis, leeway: Millis) -> Result<()> {
    let now_secs = now.div_euclid(1000);
    let leeway_secs = leeway.div_euclid(1000);
    if now_secs >= claims.exp.saturating_add(leeway_secs) {
        return Err(Error::TokenExpired);
    }
    if now_secs.saturating_add(leeway_secs) < claims.nbf.max(claims.iat) {
        return Err(Error::TokenNotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64, exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "iss".into(),
            sub: "sub".into(),
            aud: "aud".into(),
            exp,
            iat,
            nbf: iat,
            jti: "jti".into(),
            sid: "sid".into(),
            tenant: "t".into(),
            scope: String::new(),
            extra: Map::new(),
        }
    }

    #[test]
    fn leeway_covers_a_minting_clock_ahead_and_an_expiry_just_past() {
        let c = claims(1_000, 1_900);
        let leeway = 60_000;
        // Minted by a clock 59 s ahead: valid; 61 s ahead: not yet.
        assert!(check_lifetime(&c, 941_000, leeway).is_ok());
        assert!(matches!(
            check_lifetime(&c, 939_000, leeway),
            Err(Error::TokenNotYetValid)
        ));
        // Past exp by less than the leeway: still valid; by more: expired.
        assert!(check_lifetime(&c, 1_959_000, leeway).is_ok());
        assert!(matches!(
            check_lifetime(&c, 1_960_000, leeway),
            Err(Error::TokenExpired)
        ));
        // No leeway: exact.
        assert!(matches!(
            check_lifetime(&c, 999_000, 0),
            Err(Error::TokenNotYetValid)
        ));
        assert!(matches!(
            check_lifetime(&c, 1_900_000, 0),
            Err(Error::TokenExpired)
        ));
    }
}
