//! Revocations get a database-assigned position, so that replicas learn
//! about them by a cursor instead of comparing timestamps written by other
//! machines' clocks. On PostgreSQL the position is the revoking
//! transaction's id (a poller resumes from its snapshot's xmin, which no
//! uncommitted revocation can be below); on SQLite, where writers are
//! serialised, a counter row. Also a partial index on live sessions, so
//! that the per-subject session cap reads only live rows however many
//! revoked ones a subject has piled up; and the (tenant, expiry) index goes:
//! no query needs it, and SQLite's planner preferred it for the cap query,
//! reading every unexpired session of the tenant on each Issue.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    RevocationSeq,
}

#[derive(DeriveIden)]
enum RevocationCounter {
    Table,
    Id,
    Seq,
}

const LIVE_INDEX: &str = "idx_sessions_live_by_subject";
const TENANT_EXPIRY_INDEX: &str = "idx_sessions_tenant_expires_at";
const SEQ_INDEX: &str = "idx_sessions_revocation_seq";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("sessions", "revocation_seq").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .add_column(ColumnDef::new(Sessions::RevocationSeq).big_integer().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(SEQ_INDEX)
                    .table(Sessions::Table)
                    .col(Sessions::RevocationSeq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Same syntax on both backends; sea-query has no partial indexes.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {LIVE_INDEX} ON sessions \
                 (tenant_id, subject, last_used_at) WHERE revoked_at IS NULL"
            ))
            .await?;
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {TENANT_EXPIRY_INDEX}"))
            .await?;
        if manager.get_database_backend() == DbBackend::Sqlite {
            manager
                .create_table(
                    Table::create()
                        .table(RevocationCounter::Table)
                        .if_not_exists()
                        .col(
                            ColumnDef::new(RevocationCounter::Id)
                                .integer()
                                .not_null()
                                .primary_key(),
                        )
                        .col(
                            ColumnDef::new(RevocationCounter::Seq)
                                .big_integer()
                                .not_null(),
                        )
                        .to_owned(),
                )
                .await?;
            manager
                .get_connection()
                .execute_unprepared(
                    "INSERT INTO revocation_counter (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            manager
                .drop_table(
                    Table::drop()
                        .table(RevocationCounter::Table)
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {LIVE_INDEX}"))
            .await?;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {TENANT_EXPIRY_INDEX} ON sessions (tenant_id, expires_at)"
            ))
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(SEQ_INDEX)
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::RevocationSeq)
                    .to_owned(),
            )
            .await
    }
}
