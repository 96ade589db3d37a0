//! Certificate-bound access tokens (RFC 8705): the `cnf` claim holding the
//! x5t#S256 thumbprint of the certificate the token is bound to, and how a
//! presented certificate is checked against it.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// An x5t#S256 thumbprint: base64url (no padding) of 32 bytes.
pub const THUMBPRINT_LEN: usize = 43;

/// The `cnf` (confirmation) claim of a bound token (RFC 8705 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

impl Confirmation {
    pub fn new(thumbprint: impl Into<String>) -> Self {
        Self {
            x5t_s256: thumbprint.into(),
        }
    }
}

/// The x5t#S256 thumbprint of a certificate: base64url (no padding) of the
/// SHA-256 of its DER encoding.
pub fn thumbprint_of_der(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der))
}

/// `INVALID_ARGUMENT` naming `field` unless `value` is a thumbprint.
pub fn check_thumbprint(field: &'static str, value: &str) -> Result<()> {
    let well_formed = value.len() == THUMBPRINT_LEN
        && URL_SAFE_NO_PAD
            .decode(value)
            .is_ok_and(|bytes| bytes.len() == 32);
    if well_formed {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be an x5t#S256 thumbprint: 43 characters of base64url (SHA-256 of the certificate's DER)",
        ))
    }
}

/// Whether the presented thumbprint is the bound one. The digests of both
/// are compared, so that the time taken tells nothing about how much of a
/// guess matched.
pub fn thumbprints_match(bound: &str, presented: &str) -> bool {
    let digest_of = |s: &str| digest::digest(&digest::SHA256, s.as_bytes());
    digest_of(bound).as_ref() == digest_of(presented).as_ref()
}

/// Refuses a token bound to a certificate unless `presented` (the
/// presenter's thumbprint; empty: none) is that certificate's.
pub fn check_presenter(cnf: Option<&Confirmation>, presented: &str) -> Result<()> {
    match cnf {
        Some(cnf) if presented.is_empty() || !thumbprints_match(&cnf.x5t_s256, presented) => {
            Err(Error::TokenBindingMismatch)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_are_base64url_sha256_of_the_der() {
        // SHA-256 of the empty input.
        assert_eq!(
            thumbprint_of_der(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert!(check_thumbprint("t", &thumbprint_of_der(b"cert")).is_ok());
        for bad in [
            "",
            "abc",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFUA",
        ] {
            assert!(check_thumbprint("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bound_token_needs_its_own_certificate() {
        let bound = Confirmation::new(thumbprint_of_der(b"mine"));
        let other = thumbprint_of_der(b"other");
        assert!(check_presenter(Some(&bound), &bound.x5t_s256).is_ok());
        for presented in ["", other.as_str()] {
            assert!(matches!(
                check_presenter(Some(&bound), presented),
                Err(Error::TokenBindingMismatch)
            ));
        }
        assert!(check_presenter(None, "").is_ok());
        assert!(check_presenter(None, &other).is_ok());
        let json = serde_json::to_value(&bound).unwrap();
        assert_eq!(json, serde_json::json!({"x5t#S256": bound.x5t_s256}));
    }
}
