//! Schema migrations for Token Authority (SQLite and PostgreSQL).
//!
//! Timestamps are stored as BIGINT milliseconds since the Unix epoch: the
//! same type, comparison and index behaviour on every backend.
//!
//! # Expand, then contract
//!
//! Replicas are upgraded one at a time, and the first one to start migrates
//! the database while the others still run the previous release. So a
//! migration may only:
//! - **expand**: add what the previous release ignores (a nullable column
//!   or one with a default, a new table, a new index); or
//! - **contract**: remove what the previous release no longer uses.
//!
//! A rename or a drop of something in use therefore takes two releases:
//! release N adds the new column (and writes both), release N+1 stops
//! reading the old one, and a migration of release N+1 or later drops it.
//! Never make a migration that the previous release cannot run beside;
//! `tests/api/upgrade.rs` runs today's server on rows written at the
//! previous schema.
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_initial;
mod m20261124_000002_key_activation;
mod m20261201_000003_revocation_cursor;
mod m20261202_000004_hot_rotation;
mod m20261202_000005_session_client_id;
mod m20261203_000006_key_withdrawal;
mod m20261203_000007_session_binding;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261124_000002_key_activation::Migration),
            Box::new(m20261201_000003_revocation_cursor::Migration),
            Box::new(m20261202_000004_hot_rotation::Migration),
            Box::new(m20261202_000005_session_client_id::Migration),
            Box::new(m20261203_000006_key_withdrawal::Migration),
            Box::new(m20261203_000007_session_binding::Migration),
        ]
    }
}
