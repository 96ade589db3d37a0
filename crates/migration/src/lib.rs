//! Schema migrations for Token Authority (SQLite and PostgreSQL).
//!
//! Timestamps are stored as BIGINT milliseconds since the Unix epoch: the
//! same type, comparison and index behaviour on every backend.
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_initial;
mod m20261124_000002_key_activation;
mod m20261201_000003_revocation_cursor;
mod m20261202_000004_hot_rotation;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261124_000002_key_activation::Migration),
            Box::new(m20261201_000003_revocation_cursor::Migration),
            Box::new(m20261202_000004_hot_rotation::Migration),
        ]
    }
}
