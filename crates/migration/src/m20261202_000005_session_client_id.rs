//! Sessions remember the caller that issued them, for the `client_id`
//! claim (RFC 9068) of every access token of the session: a refresh by
//! another caller must not change it, so it is stored, not taken from the
//! refresher.
//!
//! Expand only: a NOT NULL column with a constant default, so rows of the
//! previous release (and its replicas' inserts during a rolling upgrade,
//! which do not name the column) get `''`: "not recorded". Their tokens then
//! carry no `client_id` (see docs/access-tokens.md). A constant default is
//! a catalogue change on PostgreSQL 11+ and SQLite alike: no table rewrite.
//!
//! Not indexed, and a rotation never writes it: a refresh stays a HOT
//! update (see `m20261202_000004_hot_rotation`).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ClientId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("sessions", "client_id").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(
                        ColumnDef::new(Sessions::ClientId)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::ClientId)
                    .to_owned(),
            )
            .await
    }
}
