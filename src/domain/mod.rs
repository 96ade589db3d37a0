//! The token and session domain: what a token is, how sessions rotate and
//! end, which keys sign, what validates. Knows nothing of gRPC; persists
//! through `crate::storage`.
pub mod access_token;
mod authority;
pub mod caller;
pub mod error;
pub mod input;
mod key_store;
pub mod keys;
pub mod model;
pub mod refresh_token;
pub mod revocation_feed;
pub mod revocations;
pub mod validation;
pub mod validator;
mod verified_tokens;

pub use authority::{
    revocation_lifetime, Authority, KeyInfo, KeyStatus, Settings, REVOCATION_MARGIN,
};
pub use error::{Error, ErrorKind, Result};
