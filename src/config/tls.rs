//! TLS for the gRPC port.
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
