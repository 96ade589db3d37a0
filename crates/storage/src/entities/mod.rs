//! SeaORM entities; the schema itself is in the `migration` crate.
pub mod audit_event;
pub mod server_secret;
pub mod session;
pub mod signing_key;
