//! Access tokens: JWTs (RFC 9068 style, header `typ: at+jwt`).
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::binding::Confirmation;
use super::error::{Error, Result};
use super::keys::{SigningKey, VerifyingKeys};
use crate::clock::Millis;

pub const TOKEN_TYPE: &str = "at+jwt";

/// Registered claims that extra claims may not override.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "sid",
    "tenant",
    "scope",
    "client_id",
    "typ",
    "kid",
    "act",
    "cnf",
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
    /// The caller that issued the session (RFC 9068 `client_id`). Empty,
    /// and left out of the token, for sessions issued before it was
    /// recorded; tokens of those (or of an older release) verify without it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Who acts on the subject's behalf (RFC 8693 §4.1): set on tokens
    /// minted by token exchange, absent on those of Issue and Refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The certificate the token is bound to (RFC 8705): a presenter
    /// without it is refused. Absent on bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An `act` claim: the party acting, and the one that acted before it
/// (the delegation chain, most recent first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// `sub` acting on top of `previous` (an earlier chain, if any).
    pub fn new(sub: impl Into<String>, previous: Option<Actor>) -> Self {
        Self {
            sub: sub.into(),
            act: previous.map(Box::new),
        }
    }

    /// How many actors the chain holds (this one included).
    pub fn depth(&self) -> usize {
        std::iter::successors(Some(self), |a| a.act.as_deref()).count()
    }
}

/// Signs a compact JWS (`header.payload.signature`, RFC 7515). Verified by
/// `verify`.
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

/// The JOSE header fields we look at; others are ignored, but `crit`
/// (extensions the verifier must understand, RFC 7515 §4.1.11) refuses the
/// token since we understand none.
#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
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
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::TokenInvalid);
    };
    let header: Header = decode_json(header_part)?;
    if header.typ.as_deref() != Some(TOKEN_TYPE) || header.crit.is_some() {
        return Err(Error::TokenInvalid);
    }
    let kid = header.kid.ok_or(Error::TokenInvalid)?;
    let key = keys.get(&kid).ok_or(if keys.is_withdrawn(&kid) {
        Error::KeyWithdrawn
    } else {
        Error::TokenInvalid
    })?;
    // The key decides the algorithm; the header must agree (no `none`, no
    // algorithm confusion).
    if header.alg != key.algorithm.as_str() {
        return Err(Error::TokenInvalid);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Error::TokenInvalid)?;
    // The signing input is `header.payload` as sent (RFC 7515 §5.2).
    let signed = token.get(..header_part.len() + 1 + payload.len());
    if !signed.is_some_and(|signed| key.verifies(signed.as_bytes(), &signature)) {
        return Err(Error::TokenInvalid);
    }
    let claims: AccessClaims = decode_json(payload)?;
    if claims.iss != issuer {
        return Err(Error::TokenInvalid);
    }
    check_lifetime(&claims, now, leeway)?;
    Ok(Verified { claims, kid })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Error::TokenInvalid)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::TokenInvalid)
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
    use crate::keys::{generate, KeyAlgorithm, PublicKey};

    const NOW: Millis = 1_000_000_000;

    fn signer(algorithm: KeyAlgorithm) -> (SigningKey, VerifyingKeys) {
        let key = generate(algorithm).expect("key");
        let signer = SigningKey::from_pkcs8(&key.kid, algorithm, &key.pkcs8).expect("parse");
        let keys = VerifyingKeys::new(vec![PublicKey {
            kid: key.kid,
            algorithm,
            key: key.public_key,
        }]);
        (signer, keys)
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn genuine_tokens_verify_and_every_forgery_is_refused() {
        for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let (signer, keys) = signer(algorithm);
            let c = claims(NOW / 1000, NOW / 1000 + 900);
            let claims_c = AccessClaims {
                iss: "iss".into(),
                ..c
            };
            let token = sign(&signer, &claims_c).expect("sign");
            let verified = verify(&keys, "iss", &token, NOW, 0).expect("genuine");
            assert_eq!(verified.claims, claims_c);
            assert_eq!(verified.kid, signer.kid);

            let [header, payload, signature]: [&str; 3] = token
                .split('.')
                .collect::<Vec<_>>()
                .try_into()
                .expect("3 parts");
            let other_payload = b64(&serde_json::to_string(&AccessClaims {
                sub: "mallory".into(),
                ..claims_c.clone()
            })
            .expect("json"));
            let kid = &signer.kid;
            let other_alg = match algorithm {
                KeyAlgorithm::EdDsa => "ES256",
                KeyAlgorithm::Es256 => "EdDSA",
            };
            let forgeries = [
                format!("{header}.{other_payload}.{signature}"),
                format!("{header}.{payload}.{signature}A"),
                format!("{header}.{payload}."),
                format!("{header}.{payload}"),
                format!("{token}.x"),
                format!(
                    "{}.{payload}.",
                    b64(&format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#))
                ),
                format!(
                    "{}.{payload}.{signature}",
                    b64(&format!(
                        r#"{{"alg":"{other_alg}","typ":"at+jwt","kid":"{kid}"}}"#
                    ))
                ),
                format!(
                    "{}.{payload}.{signature}",
                    b64(&format!(
                        r#"{{"alg":"{}","kid":"{kid}"}}"#,
                        algorithm.as_str()
                    ))
                ),
                format!(
                    "{}.{payload}.{signature}",
                    b64(&format!(
                        r#"{{"alg":"{}","typ":"at+jwt","kid":"{kid}","crit":["exp"]}}"#,
                        algorithm.as_str()
                    ))
                ),
                format!(
                    "{}.{payload}.{signature}",
                    b64(&format!(
                        r#"{{"alg":"{}","typ":"at+jwt","kid":"nope"}}"#,
                        algorithm.as_str()
                    ))
                ),
                "garbage".into(),
                String::new(),
            ];
            for forged in &forgeries {
                assert!(
                    matches!(
                        verify(&keys, "iss", forged, NOW, 0),
                        Err(Error::TokenInvalid)
                    ),
                    "{algorithm}: accepted {forged}"
                );
            }
            assert!(matches!(
                verify(&keys, "other-issuer", &token, NOW, 0),
                Err(Error::TokenInvalid)
            ));
        }
    }

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
            client_id: "login".into(),
            act: None,
            cnf: None,
            extra: Map::new(),
        }
    }

    #[test]
    fn client_id_is_left_out_when_unknown_and_optional_when_verifying() {
        let (signer, keys) = signer(KeyAlgorithm::EdDsa);
        let payload = |token: &str| -> Map<String, Value> {
            let part = token.split('.').nth(1).expect("payload");
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
        };
        let known = sign(&signer, &claims(NOW / 1000, NOW / 1000 + 900)).expect("sign");
        assert_eq!(payload(&known)["client_id"], "login");

        let unknown = AccessClaims {
            client_id: String::new(),
            ..claims(NOW / 1000, NOW / 1000 + 900)
        };
        let token = sign(&signer, &unknown).expect("sign");
        assert!(!payload(&token).contains_key("client_id"));
        let verified = verify(&keys, "iss", &token, NOW, 0).expect("verifies without client_id");
        assert_eq!(verified.claims, unknown);
    }

    #[test]
    fn act_is_a_typed_claim_omitted_when_absent() {
        let plain = claims(1_000, 1_900);
        let json = serde_json::to_value(&plain).expect("json");
        assert!(json.get("act").is_none());
        let delegated = AccessClaims {
            act: Some(Actor::new("billing", Some(Actor::new("orders", None)))),
            ..plain
        };
        let json = serde_json::to_value(&delegated).expect("json");
        assert_eq!(
            json["act"],
            serde_json::json!({"sub": "billing", "act": {"sub": "orders"}})
        );
        let back: AccessClaims = serde_json::from_value(json).expect("decode");
        assert_eq!(back, delegated);
        assert!(back.extra.is_empty());
        assert_eq!(back.act.map(|a| a.depth()), Some(2));
        assert!(RESERVED_CLAIMS.contains(&"act"));
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
