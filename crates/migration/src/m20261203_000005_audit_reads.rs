//! `ListAuditEvents` and `token-authority audit` read the audit trail back.
//! Of their filters, only the session id had no index: a session's trail
//! (the usual question after an incident: what happened to this session?)
//! scanned the whole table, which is the bulk of the database.
//!
//! One index, and only one: `audit_events` takes a row per issue, refresh
//! (with `audit.refreshes`) and revocation, and the purge deletes most rows
//! ever written, so every index costs on each write and each purged row.
//! - `(session_id) WHERE session_id IS NOT NULL`: a session has a handful
//!   of events, sorted after the lookup at no cost. Partial, because events
//!   of no session (refusals, key rotations: a flood of refusals is what an
//!   attack writes) are never looked up by session.
//! - Not `(occurred_at, id)`: `idx_audit_events_occurred_at` already serves
//!   the newest-first walk and the keyset bound (on SQLite its entries end
//!   with the rowid, which is `id`; PostgreSQL orders ties of a millisecond
//!   by an incremental sort of the few rows that share it).
//! - Tenant and subject use `idx_audit_events_tenant_subject`; a tenant
//!   alone, or a kind, walks the time index backwards and stops at the
//!   page: no index of their own.
//!
//! Expand only: the previous release ignores the index.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const AUDIT_SESSION_INDEX: &str = "idx_audit_events_session";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Same syntax on both backends; sea-query has no partial indexes.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {AUDIT_SESSION_INDEX} \
                 ON audit_events (session_id) WHERE session_id IS NOT NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {AUDIT_SESSION_INDEX}"))
            .await?;
        Ok(())
    }
}
