//! A signing key can be withdrawn (after a compromise): `withdrawn_at`
//! records when. A withdrawn key neither signs nor verifies, and its
//! private half is wiped; the row stays until the purge deletes it, so that
//! every replica and sidecar learns which kid to refuse.
//!
//! Expand only: a nullable column the previous release ignores. A replica
//! of the previous release still verifies with a withdrawn key until it is
//! upgraded: during a rolling upgrade, finish the upgrade first.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    WithdrawnAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("signing_keys", "withdrawn_at").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .add_column(
                        ColumnDef::new(SigningKeys::WithdrawnAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .drop_column(SigningKeys::WithdrawnAt)
                    .to_owned(),
            )
            .await
    }
}
