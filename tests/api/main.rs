//! Integration tests: the real server over real gRPC.
mod bad_input;
mod common;
mod expiry;
mod faults;
mod grpcurl;
mod jwks;
mod lifecycle;
mod logs;
mod otlp;
mod processes;
mod purge;
mod replicas;
mod rotation;
mod tenants;
