//! Token Authority: a gRPC service that issues, rotates, revokes and
//! validates session tokens.
//!
//! Map: `proto` (generated contract) · `transport` (gRPC) · `domain` (tokens
//! and sessions) · `storage` (database) · `jobs` (background tasks) ·
//! `telemetry` · `config` · `clock` · `cli` · `app` (wiring).
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod jobs;
pub mod proto;
pub mod storage;
pub mod telemetry;
pub mod transport;
