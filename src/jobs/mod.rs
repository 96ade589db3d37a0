//! Background tasks that run beside the gRPC server.
pub mod purge;
pub mod state_sync;
