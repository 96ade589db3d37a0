//! Background tasks that run beside the gRPC server.
pub mod revocation_sync;
