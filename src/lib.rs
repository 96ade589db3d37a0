//! Token Authority: a gRPC service that issues, rotates, revokes and
//! validates session tokens. This crate is the process: it wires the
//! libraries of the workspace together and talks to the outside world.
//!
//! Map: `transport` (gRPC and HTTP) · `access` (who may call what) · `jobs`
//! (background tasks) · `sidecar` (local validation from a streamed copy) ·
//! `telemetry` · `config` · `cli` (the command line) · `app` (wiring). The
//! libraries, each its own crate: `proto` (the contract), `verify` (what
//! every validator needs), `domain` (the token and session rules and their
//! storage ports), `storage` (the database). See ARCHITECTURE.md.
pub mod access;
pub mod app;
pub mod cli;
pub mod config;
pub mod jobs;
pub mod sidecar;
pub mod telemetry;
pub mod transport;

pub use token_authority_domain as domain;
pub use token_authority_proto as proto;
pub use token_authority_storage as storage;
pub use token_authority_verify as verify;
