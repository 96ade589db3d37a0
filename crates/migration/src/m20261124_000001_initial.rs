use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    TenantId,
    Subject,
    Audience,
    Scopes,
    ExtraClaims,
    Generation,
    TokenDigest,
    PreviousDigest,
    RotatedAt,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    IdleExpiresAt,
    RevokedAt,
    RevokeReason,
    DeviceName,
    UserAgent,
    Ip,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    PrivateKey,
    PublicKey,
    CreatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum ServerSecrets {
    Table,
    Name,
    Secret,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    Kind,
    TenantId,
    Subject,
    SessionId,
    Detail,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Sessions::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Sessions::TenantId).string().not_null())
                    .col(ColumnDef::new(Sessions::Subject).string().not_null())
                    .col(ColumnDef::new(Sessions::Audience).string().not_null())
                    .col(ColumnDef::new(Sessions::Scopes).text().not_null())
                    .col(ColumnDef::new(Sessions::ExtraClaims).text().null())
                    .col(
                        ColumnDef::new(Sessions::Generation)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Sessions::TokenDigest).binary().not_null())
                    .col(ColumnDef::new(Sessions::PreviousDigest).binary().null())
                    .col(ColumnDef::new(Sessions::RotatedAt).big_integer().null())
                    .col(ColumnDef::new(Sessions::CreatedAt).big_integer().not_null())
                    .col(
                        ColumnDef::new(Sessions::LastUsedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Sessions::ExpiresAt).big_integer().not_null())
                    .col(
                        ColumnDef::new(Sessions::IdleExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Sessions::RevokedAt).big_integer().null())
                    .col(ColumnDef::new(Sessions::RevokeReason).string().null())
                    .col(ColumnDef::new(Sessions::DeviceName).string().not_null())
                    .col(ColumnDef::new(Sessions::UserAgent).string().not_null())
                    .col(ColumnDef::new(Sessions::Ip).string().not_null())
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "idx_sessions_tenant_subject",
                vec![Sessions::TenantId, Sessions::Subject],
            ),
            ("idx_sessions_expires_at", vec![Sessions::ExpiresAt]),
            (
                "idx_sessions_idle_expires_at",
                vec![Sessions::IdleExpiresAt],
            ),
            (
                "idx_sessions_tenant_expires_at",
                vec![Sessions::TenantId, Sessions::ExpiresAt],
            ),
            ("idx_sessions_revoked_at", vec![Sessions::RevokedAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Sessions::Table).if_not_exists();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SigningKeys::Kid)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SigningKeys::Algorithm).string().not_null())
                    .col(ColumnDef::new(SigningKeys::PrivateKey).binary().not_null())
                    .col(ColumnDef::new(SigningKeys::PublicKey).binary().not_null())
                    .col(
                        ColumnDef::new(SigningKeys::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SigningKeys::RetiredAt).big_integer().null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ServerSecrets::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ServerSecrets::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ServerSecrets::Secret).binary().not_null())
                    .col(
                        ColumnDef::new(ServerSecrets::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditEvents::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::OccurredAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::Kind).string().not_null())
                    .col(ColumnDef::new(AuditEvents::TenantId).string().not_null())
                    .col(ColumnDef::new(AuditEvents::Subject).string().not_null())
                    .col(ColumnDef::new(AuditEvents::SessionId).string_len(36).null())
                    .col(ColumnDef::new(AuditEvents::Detail).text().null())
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "idx_audit_events_occurred_at",
                vec![AuditEvents::OccurredAt],
            ),
            (
                "idx_audit_events_tenant_subject",
                vec![AuditEvents::TenantId, AuditEvents::Subject],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table).if_not_exists();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditEvents::Table.into_iden(),
            ServerSecrets::Table.into_iden(),
            SigningKeys::Table.into_iden(),
            Sessions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
