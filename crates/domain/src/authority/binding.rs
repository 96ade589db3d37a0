//! Binding requests of Issue and Refresh (RFC 8705): which certificate the
//! access tokens are bound to, and whether the tenant requires one.
use token_authority_verify::binding::check_thumbprint;

use super::Authority;
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::model::TokenBinding;

/// A checked binding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binding {
    /// x5t#S256 of the certificate the tokens are bound to.
    pub thumbprint: String,
    /// Only that certificate's holder may refresh.
    pub refresh: bool,
}

/// The certificate a binding request names: a thumbprint, or the verified
/// client certificate of the caller's connection (exactly one of them).
pub(super) fn checked(caller: &Caller, binding: &TokenBinding) -> Result<Binding> {
    let named = !binding.certificate_thumbprint.is_empty();
    let thumbprint = match (named, binding.bind_to_caller_certificate) {
        (true, false) => {
            check_thumbprint(
                "binding.certificate_thumbprint",
                &binding.certificate_thumbprint,
            )?;
            binding.certificate_thumbprint.clone()
        }
        (false, true) => caller
            .certificate_thumbprint
            .as_deref()
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::invalid(
                    "binding.bind_to_caller_certificate",
                    "the connection presented no client certificate (bind_to_caller_certificate needs mTLS)",
                )
            })?,
        (true, true) => {
            return Err(Error::invalid(
                "binding",
                "set certificate_thumbprint or bind_to_caller_certificate, not both",
            ))
        }
        (false, false) => {
            return Err(Error::invalid(
                "binding",
                "set certificate_thumbprint or bind_to_caller_certificate",
            ))
        }
    };
    Ok(Binding {
        thumbprint,
        refresh: binding.bind_refresh_token,
    })
}

impl Authority {
    /// Tenants whose tokens must be bound; the rotation refuses an unbound
    /// session of theirs unless the refresh asks for a binding.
    pub(super) fn binding_required_tenants(&self) -> &[String] {
        &self.settings.binding_required_tenants
    }

    /// `TOKEN_BINDING_REQUIRED` for an unbound Issue of such a tenant.
    pub(super) fn check_binding_policy(
        &self,
        tenant: &str,
        binding: Option<&Binding>,
    ) -> Result<()> {
        if binding.is_none() && self.binding_required_tenants().iter().any(|t| t == tenant) {
            return Err(Error::BindingRequired);
        }
        Ok(())
    }
}
