//! The contract: code generated from the protos in this folder by build.rs.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("token_authority.v1");

/// Encoded descriptors of our protos (and their imports), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/token_authority_descriptor.bin"));

/// Encoded descriptors of the vendored google.rpc error model (Status,
/// ErrorInfo, BadRequest, RetryInfo…), for reflection: the same files
/// clients compile from `proto/vendor/google/rpc`.
pub const GOOGLE_RPC_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

/// Encoded descriptors of Envoy's external-authorization API, for reflection.
pub const ENVOY_AUTHZ_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_authz_descriptor.bin"));
