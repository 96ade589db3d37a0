//! Token Authority: a gRPC service that issues, rotates, revokes and
//! validates session tokens.
//!
//! Map: `proto` (generated contract) · `transport` (gRPC and HTTP) ·
//! `access` (who may call what) · `domain` (tokens, sessions, keys) ·
//! `storage` (database) · `jobs` (background tasks) · `sidecar` (local
//! validation from a streamed copy) · `telemetry` · `config` · `rate_limit` ·
//! `clock` · `cli` · `app` (wiring).
pub mod access;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod jobs;
pub mod proto;
pub mod rate_limit;
pub mod sidecar;
pub mod storage;
pub mod telemetry;
pub mod transport;
