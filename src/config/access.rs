//! Who may call the service, and TLS for its gRPC port.
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rate::Rate;
use crate::access::Permission;

/// In `tenants`: every tenant.
pub const ALL_TENANTS: &str = "*";

/// With no callers the server has no authentication: it then binds a
/// loopback address only (or refuses to start, unless `--insecure`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub callers: Vec<CallerConfig>,
}

/// One calling service, e.g.
/// ```toml
/// [[auth.callers]]
/// name = "login"
/// key_sha256 = ["<sha256 of the bearer key, hex>"]   # token-authority callers new-key
/// identities = ["spiffe://corp/ns/prod/sa/login"]     # client-certificate SANs (URI or DNS)
/// permissions = ["Issue"]
/// tenants = ["acme"]                                  # required; ["*"]: every tenant
/// rate = "500/s"                                      # default limits.caller_rate
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    pub name: String,
    #[serde(default)]
    pub key_sha256: Vec<String>,
    #[serde(default)]
    pub identities: Vec<String>,
    pub permissions: Vec<Permission>,
    /// Required, so that forgetting it cannot grant every tenant.
    pub tenants: Vec<String>,
    #[serde(default, with = "super::rate::optional")]
    pub rate: Option<Rate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Every connection must present a certificate signed by `client_ca_file`.
    Required,
    /// A certificate is verified if presented; callers may use bearer keys instead.
    Optional,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain and private key of the server. Both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM CA that client certificates must chain to (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// A connection that has not finished its TLS handshake by then is dropped.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: ClientAuth::Required,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

impl TlsConfig {
    pub fn is_enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}
