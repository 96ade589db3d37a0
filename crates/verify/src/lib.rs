//! What every validator needs, the authority and the sidecar alike: what an
//! access token is and how it is checked (claims, signing and verifying
//! keys, JWKs), the validator with its cache of verified tokens and its set
//! of revoked sessions, the caller, input limits, the clock, and the error
//! contract every room answers with. Knows neither gRPC nor a database.
pub mod access_token;
pub mod binding;
pub mod caller;
pub mod clock;
pub mod digest;
pub mod error;
pub mod input;
pub mod keys;
pub mod model;
pub mod revocation_feed;
pub mod revocations;
pub mod validation;
pub mod validator;
mod verified_tokens;

pub use error::{Error, ErrorKind, Result, StorageError};
