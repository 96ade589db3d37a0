//! Access-token keys as every verifier sees them: generated with ring
//! (Ed25519 or P-256), signing and verifying halves, and their JWKs.
mod algorithm;
mod generate;
pub mod jwk;
mod signing;
mod verifying;

pub use algorithm::KeyAlgorithm;
pub use generate::{ephemeral, generate, GeneratedKey};
pub use signing::SigningKey;
pub use verifying::{PublicKey, VerifyingKey, VerifyingKeys};
