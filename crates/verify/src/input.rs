//! Checks on everything a caller sends. Each failure names the field.
use std::net::IpAddr;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::access_token::RESERVED_CLAIMS;
use super::error::{Error, Result};

pub const MAX_TENANT_ID: usize = 128;
pub const MAX_SUBJECT: usize = 256;
pub const MAX_AUDIENCE: usize = 256;
pub const MAX_SCOPES: usize = 64;
pub const MAX_SCOPE: usize = 128;
pub const MAX_DEVICE_NAME: usize = 128;
pub const MAX_USER_AGENT: usize = 512;
pub const MAX_EXTRA_CLAIMS_JSON: usize = 4096;
pub const MAX_REFRESH_TOKEN: usize = 512;
pub const MAX_ACCESS_TOKEN: usize = 8192;
pub const MAX_REASON: usize = 256;
pub const MAX_PAGE_TOKEN: usize = 128;
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

pub fn tenant_id(field: &'static str, value: &str) -> Result<()> {
    bounded(field, value, MAX_TENANT_ID)?;
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(Error::invalid(
            field,
            "may contain only A-Z a-z 0-9 . _ : -",
        ));
    }
    Ok(())
}

/// Required printable text (subject, audience).
pub fn name(field: &'static str, value: &str, max: usize) -> Result<()> {
    bounded(field, value, max)?;
    printable(field, value)
}

/// Optional printable text (device fields, reasons).
pub fn optional_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    printable(field, value)
}

/// Checks and normalises an IP literal; empty means unknown.
pub fn ip(field: &'static str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    value
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| Error::invalid(field, "must be an IPv4 or IPv6 address"))
}

/// Checks scopes and returns them de-duplicated, in the order given.
pub fn scopes(values: &[String]) -> Result<Vec<String>> {
    if values.len() > MAX_SCOPES {
        return Err(Error::invalid(
            "scopes",
            format!("at most {MAX_SCOPES} scopes"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for scope in values {
        if scope.is_empty() || scope.len() > MAX_SCOPE {
            return Err(Error::invalid(
                "scopes",
                format!("each scope must be 1-{MAX_SCOPE} characters"),
            ));
        }
        // RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
        if !scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err(Error::invalid(
                "scopes",
                "scopes may contain printable ASCII except space, \" and \\",
            ));
        }
        if !out.contains(scope) {
            out.push(scope.clone());
        }
    }
    Ok(out)
}

pub fn extra_claims(claims: &Map<String, Value>) -> Result<()> {
    if let Some(key) = claims
        .keys()
        .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
    {
        return Err(Error::invalid(
            "extra_claims",
            format!("\"{key}\" is a registered claim and cannot be set"),
        ));
    }
    let size = serde_json::to_vec(claims)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_EXTRA_CLAIMS_JSON {
        return Err(Error::invalid(
            "extra_claims",
            format!("must be at most {MAX_EXTRA_CLAIMS_JSON} bytes as JSON"),
        ));
    }
    Ok(())
}

pub fn token(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    Ok(())
}

pub fn session_id(field: &'static str, value: &str) -> Result<Uuid> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    Uuid::try_parse(value).map_err(|_| Error::invalid(field, "must be a session id (UUID)"))
}

pub fn page_size(value: u32) -> u32 {
    match value {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

fn printable(field: &'static str, value: &str) -> Result<()> {
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert!(tenant_id("t", "acme-prod.eu_1:x").is_ok());
        for bad in ["", "a b", "ä", &"a".repeat(129)] {
            assert!(tenant_id("t", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_are_deduplicated_and_checked() {
        let s = |v: &[&str]| scopes(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            s(&["read", "write", "read"]).unwrap(),
            vec!["read", "write"]
        );
        assert!(s(&["has space"]).is_err());
        assert!(s(&[""]).is_err());
        assert!(s(&["quote\""]).is_err());
    }

    #[test]
    fn ips_are_normalised() {
        assert_eq!(ip("ip", "::FFFF:10.0.0.1").unwrap(), "::ffff:10.0.0.1");
        assert_eq!(ip("ip", "").unwrap(), "");
        assert!(ip("ip", "10.0.0.256").is_err());
    }

    #[test]
    fn reserved_claims_are_refused() {
        let mut m = Map::new();
        m.insert("sub".into(), Value::from("x"));
        assert!(extra_claims(&m).is_err());
        let mut m = Map::new();
        m.insert("roles".into(), Value::from(vec!["admin"]));
        assert!(extra_claims(&m).is_ok());
    }
}
