//! A refresh rewrites its session row in place; this migration lets
//! PostgreSQL do that as a HOT update (heap-only: no index touched, 5 WAL
//! records instead of 11). HOT is possible only when no indexed column (nor
//! a column in an index's predicate) changes and the page has room. A
//! rotation changes generation, the digests, rotated_at, last_used_at,
//! idle_expires_at and the device fields, so:
//!
//! - `idx_sessions_idle_expires_at` goes. The idle purge sweeps the primary
//!   key in bounded windows instead (see the storage crate's `purge.rs`).
//! - `idx_sessions_live_by_subject (tenant_id, subject, last_used_at)` is
//!   replaced by `(tenant_id, subject, id)` on the same predicate: the cap
//!   query sorts a subject's at most `max_sessions_per_subject` live rows by
//!   `last_used_at` itself, and ListSessions pages in id order straight off
//!   the index. `id` never changes.
//! - `idx_sessions_tenant_subject` goes: every query by tenant and subject
//!   also asks for live rows, which the partial index holds alone.
//! - The revocation indexes become partial (`… IS NOT NULL`): their
//!   queries (`revoked_at <= ?`, `revocation_seq >= ?`) imply it, live
//!   rows (the bulk) no longer sit in them, and a purge of expired live
//!   sessions has two fewer indexes to maintain (SQLite deletes index
//!   entries eagerly).
//! - PostgreSQL: `fillfactor = 85` leaves room on each page for the new
//!   row version. It applies to pages written from now on; existing pages
//!   get it when rewritten (VACUUM FULL, pg_repack), which a migration
//!   must not do under load.
//!
//! Expand, then contract: the new indexes are built before the old ones
//! are dropped, so every query has its index at every step, and all of it
//! applies to a database filled under the previous migrations.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, definition) of the indexes this migration creates.
const CREATED: [(&str, &str); 3] = [
    (
        "idx_sessions_live_of_subject",
        "(tenant_id, subject, id) WHERE revoked_at IS NULL",
    ),
    (
        "idx_sessions_revoked",
        "(revoked_at) WHERE revoked_at IS NOT NULL",
    ),
    (
        "idx_sessions_revocation_seq_set",
        "(revocation_seq) WHERE revocation_seq IS NOT NULL",
    ),
];

/// (name, definition) of the indexes it drops, for `down`.
const DROPPED: [(&str, &str); 5] = [
    (
        "idx_sessions_live_by_subject",
        "(tenant_id, subject, last_used_at) WHERE revoked_at IS NULL",
    ),
    ("idx_sessions_idle_expires_at", "(idle_expires_at)"),
    ("idx_sessions_tenant_subject", "(tenant_id, subject)"),
    ("idx_sessions_revoked_at", "(revoked_at)"),
    ("idx_sessions_revocation_seq", "(revocation_seq)"),
];

const FILLFACTOR: u8 = 85;

async fn exec(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Same syntax on both backends; sea-query has no partial indexes.
        for (name, definition) in CREATED {
            exec(
                manager,
                &format!("CREATE INDEX IF NOT EXISTS {name} ON sessions {definition}"),
            )
            .await?;
        }
        for (name, _) in DROPPED {
            exec(manager, &format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        // SQLite: no ANALYZE here. Statistics taken now (often of an empty
        // table) would go stale as the table grows; without them the planner
        // prefers the index with the most equality terms, which is what the
        // plan test (tests/api/plans.rs) checks for every hot query.
        if manager.get_database_backend() == DbBackend::Postgres {
            exec(
                manager,
                &format!("ALTER TABLE sessions SET (fillfactor = {FILLFACTOR})"),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, definition) in DROPPED {
            exec(
                manager,
                &format!("CREATE INDEX IF NOT EXISTS {name} ON sessions {definition}"),
            )
            .await?;
        }
        for (name, _) in CREATED {
            exec(manager, &format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            exec(manager, "ALTER TABLE sessions RESET (fillfactor)").await?;
        }
        Ok(())
    }
}
