//! Who may call what. Callers are identified by a bearer key (only its
//! SHA-256 is configured) or by their client certificate (a DNS or URI SAN,
//! e.g. a SPIFFE id), and the policy grants each caller RPCs and tenants.
//! Knows nothing of gRPC: the transport extracts credentials and asks here.
mod bearer;
mod certificate;
pub mod config;
mod permission;
mod policy;

pub use bearer::{new_bearer_key, BearerKeyDigest};
pub use certificate::{identities, SanIdentity};
pub use permission::{Permission, Required};
pub use policy::{AuthenticatedCaller, Denial, Policy, PolicyError};
