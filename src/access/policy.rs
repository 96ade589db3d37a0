//! The configured callers: how each is recognised, which RPCs it may call,
//! which tenants it may act on, and its own rate limit.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::bearer::BearerKeyDigest;
use super::certificate::SanIdentity;
use super::config::{AuthConfig, CallerConfig, ALL_TENANTS};
use super::permission::Permission;
use crate::config::rate::Rate;
use crate::verify::caller::{Caller, TenantScope};
use crate::verify::input::MAX_AUDIENCE;

/// A recognised caller and what it was granted.
#[derive(Debug)]
pub struct AuthenticatedCaller {
    pub caller: Caller,
    permissions: HashSet<Permission>,
    pub rate: Option<Rate>,
}

impl AuthenticatedCaller {
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&Permission::All) || self.permissions.contains(&permission)
    }
}

/// Why a request was refused before reaching its RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No bearer key and no client certificate that names a caller.
    CredentialsMissing,
    /// A bearer key (or `authorization` value) that matches no caller.
    CredentialsInvalid,
    /// A known caller without the RPC's permission.
    PermissionNotGranted,
}

impl Denial {
    /// Machine-readable reason (google.rpc.ErrorInfo.reason).
    pub fn reason(self) -> &'static str {
        match self {
            Denial::CredentialsMissing => "CREDENTIALS_MISSING",
            Denial::CredentialsInvalid => "CREDENTIALS_INVALID",
            Denial::PermissionNotGranted => "PERMISSION_NOT_GRANTED",
        }
    }

    /// UNAUTHENTICATED (who are you?) rather than PERMISSION_DENIED.
    pub fn is_authentication(self) -> bool {
        !matches!(self, Denial::PermissionNotGranted)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("auth.callers: {0}")]
pub struct PolicyError(String);

#[derive(Debug, Default)]
pub struct Policy {
    callers: Vec<Arc<AuthenticatedCaller>>,
    by_key: HashMap<BearerKeyDigest, usize>,
    by_identity: HashMap<SanIdentity, usize>,
}

impl Policy {
    pub fn new(config: &AuthConfig) -> Result<Self, PolicyError> {
        let mut policy = Policy::default();
        let mut names = HashSet::new();
        for (index, c) in config.callers.iter().enumerate() {
            let err = |what: String| PolicyError(format!("caller {:?}: {what}", c.name));
            if c.name.is_empty() || !names.insert(c.name.as_str()) {
                return Err(err("names must be unique and not empty".into()));
            }
            if c.key_sha256.is_empty() && c.identities.is_empty() {
                return Err(err("needs key_sha256 or identities".into()));
            }
            if c.permissions.is_empty() {
                return Err(err("grants no permissions".into()));
            }
            for hex in &c.key_sha256 {
                let digest = BearerKeyDigest::from_hex(hex)
                    .ok_or_else(|| err(format!("{hex:?} is not a SHA-256 in hex")))?;
                if policy.by_key.insert(digest, index).is_some() {
                    return Err(err("a key digest is listed twice".into()));
                }
            }
            for identity in &c.identities {
                let typed = SanIdentity::configured(identity);
                if policy.by_identity.insert(typed, index).is_some() {
                    return Err(err(format!("identity {identity:?} is listed twice")));
                }
            }
            check_exchange(c).map_err(err)?;
            let tenants = if c.tenants.iter().any(|t| t == ALL_TENANTS) {
                TenantScope::All
            } else if c.tenants.is_empty() {
                return Err(err("tenants is empty (use [\"*\"] for every tenant)".into()));
            } else if let Some(global) = c.permissions.iter().find(|p| p.spans_tenants()) {
                return Err(err(format!(
                    "{global:?} acts on every tenant: grant it only with tenants = [\"*\"]"
                )));
            } else {
                TenantScope::Only(Arc::new(c.tenants.iter().cloned().collect::<BTreeSet<_>>()))
            };
            policy.callers.push(Arc::new(AuthenticatedCaller {
                caller: Caller {
                    name: Arc::from(c.name.as_str()),
                    tenants,
                    certificate_thumbprint: None,
                },
                permissions: c.permissions.iter().copied().collect(),
                rate: c.rate,
            }));
        }
        Ok(policy)
    }

    /// Whether any caller is configured. Without callers the server has no
    /// authentication: it serves everyone as `Caller::anonymous()`.
    pub fn is_enabled(&self) -> bool {
        !self.callers.is_empty()
    }

    /// Whether some caller is recognised by its client certificate.
    pub fn uses_certificates(&self) -> bool {
        !self.by_identity.is_empty()
    }

    /// The caller a bearer key or certificate identities name. A bearer key,
    /// if present, decides: a wrong key is refused even with a good certificate.
    pub fn authenticate(
        &self,
        bearer: Option<&str>,
        identities: &[SanIdentity],
    ) -> Result<Arc<AuthenticatedCaller>, Denial> {
        let index = match bearer {
            Some(key) => *self
                .by_key
                .get(&BearerKeyDigest::of(key))
                .ok_or(Denial::CredentialsInvalid)?,
            None => *identities
                .iter()
                .find_map(|id| self.by_identity.get(id))
                .ok_or(Denial::CredentialsMissing)?,
        };
        Ok(self.callers[index].clone())
    }
}

/// An `exchange` table goes with the `Exchange` permission, and names
/// audiences that can exist.
fn check_exchange(c: &CallerConfig) -> Result<(), String> {
    let granted = c
        .permissions
        .iter()
        .any(|p| matches!(p, Permission::Exchange | Permission::All));
    let Some(exchange) = &c.exchange else {
        if c.permissions.contains(&Permission::Exchange) {
            return Err("is granted Exchange but has no exchange table (which audiences)".into());
        }
        return Ok(());
    };
    if !granted {
        return Err("has an exchange table but is not granted Exchange".into());
    }
    for (field, list) in [
        ("subject_audiences", &exchange.subject_audiences),
        ("target_audiences", &exchange.target_audiences),
    ] {
        if list.is_empty() {
            return Err(format!(
                "exchange.{field} is empty (use [\"*\"] for any audience)"
            ));
        }
        if let Some(bad) = list.iter().find(|a| {
            a.is_empty() || a.chars().count() > MAX_AUDIENCE || a.chars().any(char::is_control)
        }) {
            return Err(format!(
                "exchange.{field}: {bad:?} is not an audience (1-{MAX_AUDIENCE} printable characters)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::config::ExchangeConfig;

    fn caller(
        name: &str,
        key: &str,
        permissions: Vec<Permission>,
        tenants: &[&str],
    ) -> CallerConfig {
        CallerConfig {
            name: name.into(),
            key_sha256: vec![BearerKeyDigest::of(key).to_hex()],
            identities: vec![format!("spiffe://test/{name}")],
            permissions,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            rate: None,
            exchange: None,
        }
    }

    #[test]
    fn keys_and_identities_name_their_caller() {
        let policy = Policy::new(&AuthConfig {
            callers: vec![
                caller("login", "k1", vec![Permission::Issue], &["acme"]),
                caller("admin", "k2", vec![Permission::All], &["*"]),
            ],
        })
        .unwrap();
        let login = policy.authenticate(Some("k1"), &[]).unwrap();
        assert_eq!(&*login.caller.name, "login");
        assert!(login.may(Permission::Issue) && !login.may(Permission::Refresh));
        assert!(login.caller.may_act_on("acme") && !login.caller.may_act_on("globex"));
        let admin = policy
            .authenticate(None, &[SanIdentity::configured("spiffe://test/admin")])
            .unwrap();
        assert!(admin.may(Permission::RotateSigningKey) && admin.caller.may_act_on("x"));
        assert_eq!(
            policy
                .authenticate(
                    Some("k3"),
                    &[SanIdentity::configured("spiffe://test/admin")]
                )
                .unwrap_err(),
            Denial::CredentialsInvalid
        );
        assert_eq!(
            policy
                .authenticate(None, &[SanIdentity::configured("spiffe://test/other")])
                .unwrap_err(),
            Denial::CredentialsMissing
        );
    }

    #[test]
    fn ambiguous_or_empty_callers_are_refused() {
        let dup = AuthConfig {
            callers: vec![
                caller("a", "k", vec![Permission::Issue], &["*"]),
                caller("b", "k", vec![Permission::Issue], &["*"]),
            ],
        };
        assert!(Policy::new(&dup).is_err());
        let none = AuthConfig {
            callers: vec![caller("a", "k", vec![], &["*"])],
        };
        assert!(Policy::new(&none).is_err());
        let no_tenants = AuthConfig {
            callers: vec![caller("a", "k", vec![Permission::Issue], &[])],
        };
        assert!(Policy::new(&no_tenants).is_err());
    }

    #[test]
    fn permissions_that_span_tenants_need_every_tenant() {
        for global in [
            Permission::WatchRevocations,
            Permission::RotateSigningKey,
            Permission::ListSigningKeys,
            Permission::All,
        ] {
            let limited = AuthConfig {
                callers: vec![caller(
                    "a",
                    "k",
                    vec![Permission::Validate, global],
                    &["acme"],
                )],
            };
            let err = Policy::new(&limited).unwrap_err().to_string();
            assert!(err.contains("acts on every tenant"), "{err}");
            let everywhere = AuthConfig {
                callers: vec![caller("a", "k", vec![global], &["*"])],
            };
            assert!(Policy::new(&everywhere).is_ok());
        }
    }

    #[test]
    fn exchange_tables_go_with_the_exchange_permission() {
        let table = || {
            Some(ExchangeConfig {
                subject_audiences: vec!["orders-api".into()],
                target_audiences: vec!["billing".into()],
            })
        };
        let check = |permissions: Vec<Permission>, exchange: Option<ExchangeConfig>| {
            let mut c = caller("a", "k", permissions, &["*"]);
            c.exchange = exchange;
            Policy::new(&AuthConfig { callers: vec![c] }).map(|_| ())
        };
        assert!(check(vec![Permission::Exchange], table()).is_ok());
        assert!(check(vec![Permission::All], table()).is_ok());
        assert!(check(vec![Permission::All], None).is_ok());
        let errors = [
            check(vec![Permission::Exchange], None),
            check(vec![Permission::Validate], table()),
            check(
                vec![Permission::Exchange],
                Some(ExchangeConfig {
                    subject_audiences: vec![],
                    target_audiences: vec!["*".into()],
                }),
            ),
            check(
                vec![Permission::Exchange],
                Some(ExchangeConfig {
                    subject_audiences: vec!["a".into()],
                    target_audiences: vec!["".into()],
                }),
            ),
        ];
        for e in errors {
            assert!(e.is_err());
        }
    }
}
