//! gRPC transport: tonic services, reflection, health and the server itself.
mod convert;
mod oversize;
mod rpc_telemetry;
mod server;
mod service;
pub mod status;

pub use server::{serve, ServeError, MAX_REQUEST_BYTES};
pub use service::TokenAuthorityService;
