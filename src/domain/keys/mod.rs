//! Access-token signing keys: generated with ring (Ed25519 or P-256),
//! sealed at rest under a key-encryption key, published as JWKs, and the
//! sets that sign (the authority) and verify (the authority and sidecars).
mod algorithm;
mod generate;
pub mod jwk;
pub mod kek;
mod key_set;
mod sealing;
mod signing;
mod verifying;

pub use algorithm::KeyAlgorithm;
pub use generate::{ephemeral, generate, GeneratedKey};
pub use key_set::{KeySet, KeyVersion, SigningWindow};
pub use sealing::{is_sealed, sealed_by, Kek, SealError};
pub use signing::SigningKey;
pub use verifying::{PublicKey, VerifyingKey, VerifyingKeys};
