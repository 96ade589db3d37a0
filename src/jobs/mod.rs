//! Background tasks that run beside the gRPC server.
pub mod state_sync;
