//! The token and session domain: what a token is, how sessions rotate and
//! end. Knows nothing of gRPC; persists through `crate::storage`.
pub mod access_token;
mod authority;
pub mod error;
pub mod input;
pub mod model;
pub mod refresh_token;
pub mod revocations;
pub mod signing_keys;
mod verified_tokens;

pub use authority::{Authority, Settings, REVOCATION_MARGIN};
pub use error::{Error, ErrorKind, Result};
