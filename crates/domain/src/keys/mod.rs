//! The authority's side of signing keys: the set that signs (by activation
//! time) and the key-encryption key that seals private halves at rest. What
//! a verifier needs of keys lives in `token_authority_verify::keys`.
pub mod kek;
pub mod kek_command;
mod kek_ring;
mod key_set;
mod sealing;
pub mod withdrawal;

pub use kek_ring::KekRing;
pub use key_set::{KeySet, KeyVersion, SigningWindow};
pub use sealing::{is_sealed, sealed_by, Kek, SealError, KEK_LEN};
pub use token_authority_verify::keys::*;
