//! The certificate a gateway says the token's presenter showed, as its
//! x5t#S256 thumbprint (RFC 8705): Envoy's `source.certificate` (URL-encoded
//! PEM) or an RFC 9440 `Client-Cert` header (`:base64(DER):`). Only the
//! gateway's word: it must set these from its own TLS session.
use axum::http::{HeaderMap, HeaderName};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode_str;

use crate::verify::binding::thumbprint_of_der;
use crate::verify::Error;

/// The thumbprint of the leaf certificate of a URL-encoded PEM (the first
/// one, if Envoy sent a chain).
pub fn from_url_encoded_pem(field: &'static str, value: &str) -> Result<String, Error> {
    let pem = percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| Error::invalid(field, "is not URL-encoded text"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|_| Error::invalid(field, "is not a PEM certificate"))?;
    if pem.label != "CERTIFICATE" {
        return Err(Error::invalid(field, "is not a PEM certificate"));
    }
    Ok(thumbprint_of_der(&pem.contents))
}

/// The thumbprint of the certificate in the trusted header `name` (the
/// `http.client_certificate_header` setting; `None`: not configured, so no
/// presenter certificate): RFC 9440 `:base64(DER):`, or URL-encoded PEM as
/// NGINX's `$ssl_client_escaped_cert` gives it. Empty: no certificate
/// (NGINX sends that for a client without one). Sent more than once or
/// malformed: refused.
pub fn from_header(
    headers: &HeaderMap,
    name: Option<&HeaderName>,
) -> Result<Option<String>, Error> {
    const FIELD: &str = "client certificate header";
    let Some(name) = name else {
        return Ok(None);
    };
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::invalid(FIELD, "sent more than once"));
    }
    let value = value
        .to_str()
        .map_err(|_| Error::invalid(FIELD, "not text"))?
        .trim();
    match value {
        "" => Ok(None),
        v if v.starts_with(':') => from_rfc9440(FIELD, v).map(Some),
        v => from_url_encoded_pem(FIELD, v).map(Some),
    }
}

/// The thumbprint of an RFC 9440 `Client-Cert` value: the DER in base64
/// between colons (a structured-field byte sequence).
pub fn from_rfc9440(field: &'static str, value: &str) -> Result<String, Error> {
    let der = value
        .trim()
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|der| !der.is_empty())
        .ok_or_else(|| Error::invalid(field, "is not :base64(DER): (RFC 9440)"))?;
    Ok(thumbprint_of_der(&der))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DER: &[u8] = b"\x30\x03\x02\x01\x01";

    #[test]
    fn both_forms_give_the_thumbprint_of_the_der() {
        let expected = thumbprint_of_der(DER);
        let b64 = STANDARD.encode(DER);
        assert_eq!(from_rfc9440("h", &format!(":{b64}:")).unwrap(), expected);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let encoded: String =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(from_url_encoded_pem("c", &encoded).unwrap(), expected);
        assert_eq!(from_url_encoded_pem("c", &pem).unwrap(), expected);
        for bad in ["", "::", b64.as_str(), ":not base64:"] {
            assert!(from_rfc9440("h", bad).is_err(), "{bad}");
        }
        assert!(from_url_encoded_pem("c", "garbage").is_err());
    }

    #[test]
    fn the_header_is_read_only_when_configured_and_once() {
        let name = HeaderName::from_static("client-cert");
        let value = format!(":{}:", STANDARD.encode(DER));
        let mut headers = HeaderMap::new();
        assert_eq!(from_header(&headers, Some(&name)).unwrap(), None);
        headers.insert(&name, "".parse().unwrap());
        assert_eq!(
            from_header(&headers, Some(&name)).unwrap(),
            None,
            "empty: none"
        );
        headers.insert(&name, value.parse().unwrap());
        assert_eq!(from_header(&headers, None).unwrap(), None, "not configured");
        assert_eq!(
            from_header(&headers, Some(&name)).unwrap(),
            Some(thumbprint_of_der(DER))
        );
        headers.append(&name, value.parse().unwrap());
        assert!(from_header(&headers, Some(&name)).is_err(), "sent twice");
    }
}
