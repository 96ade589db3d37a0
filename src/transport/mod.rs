//! gRPC transport (tonic services, access control, error mapping, server
//! assembly) and the HTTP listener for JWKS and health.
pub mod access_layer;
mod admin_service;
mod bearer_check;
mod codec_status;
mod connections;
mod convert;
mod envoy_authz;
pub mod health;
pub mod http;
mod presenter_certificate;
mod rpc_telemetry;
mod server;
mod service;
pub mod status;
mod watch;

pub use bearer_check::{SCOPES_HEADER, SESSION_HEADER, SUBJECT_HEADER, TENANT_HEADER};
pub(crate) use convert::{jwk_set_in, millis_of};
pub use server::{
    authority_routes, serve_authority, tls_config, validation_routes, GrpcServer, ServeError,
    MAX_REQUEST_BYTES,
};
pub use service::TokenAuthorityService;
