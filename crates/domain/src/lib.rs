//! The token and session domain: how sessions are issued, rotate and end,
//! which keys sign, and how the authority keeps its in-memory validation
//! state in step with the store. Knows neither gRPC nor SQL: it persists
//! through the traits in [`ports`], which the storage crate implements.
pub mod audit;
pub mod audit_read;
mod authority;
pub mod exchange_policy;
pub mod kek_rewrap;
mod key_store;
pub mod keys;
#[cfg(any(test, feature = "memory-store"))]
pub mod memory_store;
pub mod model;
pub mod ports;
pub mod rate_limit;
pub mod refresh_token;
pub mod rotation;
pub mod session;

pub use authority::{
    revocation_lifetime, Authority, KeyInfo, KeyStatus, Settings, Withdrawal,
    DEFAULT_AUDIT_PAGE_SIZE, MAX_ACTORS, MAX_AUDIT_PAGE_SIZE, REVOCATION_MARGIN,
};
pub use token_authority_verify::{Error, ErrorKind, Result};

// The vocabulary shared with every validator, under the names this crate's
// modules use.
use token_authority_verify::{access_token, binding, caller, clock, error, input};
