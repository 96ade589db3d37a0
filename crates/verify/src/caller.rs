//! Who is asking, as far as the domain cares: a name for the audit trail,
//! and the tenants the caller may act on. Established by the transport from
//! the caller's credentials (see `crate::access`), with the thumbprint of
//! the client certificate its connection presented, if any.
use std::collections::BTreeSet;
use std::sync::Arc;

use super::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    All,
    Only(Arc<BTreeSet<String>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: Arc<str>,
    pub tenants: TenantScope,
    /// The x5t#S256 thumbprint of the verified client certificate of the
    /// caller's connection (mTLS); `None` without one. What a refresh of a
    /// certificate-bound session is checked against.
    pub certificate_thumbprint: Option<Arc<str>>,
}

impl Caller {
    /// A caller of a server without authentication (loopback only, or
    /// `--insecure`): every tenant.
    pub fn anonymous() -> Self {
        Self {
            name: Arc::from("anonymous"),
            tenants: TenantScope::All,
            certificate_thumbprint: None,
        }
    }

    /// This caller, on a connection that presented the certificate with
    /// `thumbprint` (or none).
    pub fn with_certificate(self, thumbprint: Option<Arc<str>>) -> Self {
        Self {
            certificate_thumbprint: thumbprint,
            ..self
        }
    }

    pub fn may_act_on(&self, tenant: &str) -> bool {
        match &self.tenants {
            TenantScope::All => true,
            TenantScope::Only(allowed) => allowed.contains(tenant),
        }
    }

    /// `TENANT_NOT_PERMITTED` unless the caller may act on `tenant`.
    pub fn check_tenant(&self, tenant: &str) -> Result<()> {
        if self.may_act_on(tenant) {
            Ok(())
        } else {
            Err(Error::TenantNotPermitted)
        }
    }

    /// The tenants to restrict a database statement to, if any.
    pub fn tenant_filter(&self) -> Option<Vec<String>> {
        match &self.tenants {
            TenantScope::All => None,
            TenantScope::Only(allowed) => Some(allowed.iter().cloned().collect()),
        }
    }
}
