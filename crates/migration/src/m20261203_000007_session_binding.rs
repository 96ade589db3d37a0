//! Certificate-bound sessions (RFC 8705): the x5t#S256 thumbprint the
//! session's access tokens are bound to (`cnf`), and the one a refresher's
//! connection must present when the refresh token is bound too.
//!
//! Expand only: two nullable columns, NULL for every existing session (a
//! bearer session). Rows the previous release inserts during a rolling
//! upgrade do not name them and are bearer sessions; its rotations ignore
//! them, so a bound session refreshed by an old replica would get unbound
//! access tokens: upgrade every replica before binding sessions.
//!
//! Not indexed, and a rotation only reads them (as conditions): a refresh
//! stays a HOT update (see `m20261202_000004_hot_rotation`).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    CnfX5tS256,
    RefreshX5tS256,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for (name, column) in [
            ("cnf_x5t_s256", Sessions::CnfX5tS256),
            ("refresh_x5t_s256", Sessions::RefreshX5tS256),
        ] {
            if manager.has_column("sessions", name).await? {
                continue;
            }
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .add_column(ColumnDef::new(column).string().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Sessions::CnfX5tS256, Sessions::RefreshX5tS256] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
