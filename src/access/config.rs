//! The access room's part of the configuration file: who may call.
use serde::{Deserialize, Serialize};

use super::Permission;
use crate::config::rate::{self, Rate};

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
/// A caller granted `Exchange` also says what it may exchange:
/// ```toml
/// [auth.callers.exchange]
/// subject_audiences = ["orders-api"]      # tokens addressed to these may be presented
/// target_audiences = ["billing-api"]      # ... for tokens addressed to these; ["*"]: any
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
    #[serde(default, with = "rate::optional")]
    pub rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<ExchangeConfig>,
}

/// What a caller may exchange (`Exchange`). Both lists are required, so
/// that forgetting one cannot allow every audience: `["*"]` says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Subject tokens addressed to these audiences may be presented:
    /// normally the caller's own audience only, so that a service cannot
    /// exchange a token it was shown on its way to another service.
    pub subject_audiences: Vec<String>,
    /// Audiences the new tokens may be for.
    pub target_audiences: Vec<String>,
}
