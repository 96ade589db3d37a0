//! Integration tests: the real server over real gRPC.
// Test and benchmark code: a panic is a failed run, not an outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod access;
mod audit_log;
mod bad_input;
mod common;
mod config_cli;
mod connections;
mod db_proxy;
mod expiry;
mod ext_authz;
mod faults;
mod group_commit;
mod grpcurl;
mod health;
mod interop;
mod jwks;
mod keys;
mod lifecycle;
mod limits;
mod logs;
mod oidc;
mod otlp;
mod plans;
mod processes;
mod prometheus;
mod purge;
mod replicas;
mod rotation;
mod sidecar;
mod skew;
mod stalls;
mod startup;
mod tenants;
mod tls;
mod upgrade;
mod watch;
