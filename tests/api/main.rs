//! Integration tests: the real server over real gRPC.
mod bad_input;
mod common;
mod expiry;
mod grpcurl;
mod lifecycle;
mod rotation;
mod tenants;
