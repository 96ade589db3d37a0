//! A rolling upgrade: a database migrated only as far as the previous
//! release did, holding that release's rows, is migrated to the latest
//! schema and served by today's server; every RPC works on the old rows.
//!
//! How the old rows are made: the migrations the previous release did not
//! have (from m20261202_000004_hot_rotation on) change indexes and storage
//! parameters, and add columns today's code reads and writes
//! (`sessions.client_id`, the binding's `sessions.cnf_x5t_s256` and
//! `sessions.refresh_x5t_s256`, `signing_keys.withdrawn_at`). So the rows
//! are written by the authority's own write paths
//! (Issue, Refresh, Revoke: the same statements, signing keys sealed under
//! the same key-encryption key, refresh-token digests under the same
//! secret) on a database at the previous schema plus those columns, which
//! are then dropped: what is left is the previous release's shape, and the
//! values it would have written. Plus one audit row in plain SQL with the
//! old column list. Hand-written rows could not hold a sealed key or a
//! token digest that today's server accepts; running the previous
//! release's binary would mean building it in the test.
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tonic::Code;

use crate::common::*;
use token_authority::app::{connect_settings, domain_settings};
use token_authority::config::Config;
use token_authority::domain::model::{
    IssueRequest, RefreshRequest, RevokeRequest, RevokeTarget, TokenPair,
};
use token_authority::domain::Authority;
use token_authority::proto::{self as pb};
use token_authority::storage::Store;
use token_authority::verify::caller::Caller;
use token_authority::verify::clock::{Clock, ManualClock, SystemClock};

/// The last migration of the previous release.
const PREVIOUS_RELEASE_LAST: &str = "m20261201_000003_revocation_cursor";

const DAY: Duration = Duration::from_secs(24 * 3600);

fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// The rows of the previous release that the checks below look at.
struct OldRows {
    /// Idle for longer than `session_idle_ttl`: expired, not yet purged.
    idle: TokenPair,
    /// Refreshed once under the old schema.
    live: TokenPair,
    revoked: TokenPair,
    other_tenant: TokenPair,
}

fn issue(tenant: &str, subject: &str) -> IssueRequest {
    IssueRequest {
        tenant_id: tenant.into(),
        subject: subject.into(),
        audience: "api".into(),
        scopes: vec!["read".into()],
        ..Default::default()
    }
}

async fn fill_previous_release(config: &Config, raw: &DatabaseConnection) -> OldRows {
    let store = Store::connect(&connect_settings(&config.database))
        .await
        .unwrap();
    let now = SystemClock.now_millis();
    let clock = Arc::new(ManualClock::new(now - 8 * 24 * 3_600_000));
    let authority = Authority::start(Arc::new(store), clock.clone(), domain_settings(config))
        .await
        .expect("the authority starts on the previous schema");
    let caller = Caller::anonymous();
    let idle = authority
        .issue(&caller, issue("acme", "idle"))
        .await
        .unwrap();
    clock.advance(8 * DAY);
    let first = authority
        .issue(&caller, issue("acme", "alice"))
        .await
        .unwrap();
    let live = authority
        .refresh(
            &caller,
            RefreshRequest {
                refresh_token: first.refresh_token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let revoked = authority
        .issue(&caller, issue("acme", "bob"))
        .await
        .unwrap();
    authority
        .revoke(
            &caller,
            RevokeRequest {
                tenant_id: "acme".into(),
                target: Some(RevokeTarget::Session(revoked.session_id.clone())),
                reason: "left the company".into(),
            },
        )
        .await
        .unwrap();
    let other_tenant = authority
        .issue(&caller, issue("globex", "gina"))
        .await
        .unwrap();
    raw.execute_unprepared(&format!(
        "INSERT INTO audit_events (occurred_at, kind, tenant_id, subject, session_id, detail) \
         VALUES ({}, 'access_denied', '', 'intruder', NULL, 'Issue: PERMISSION_NOT_GRANTED')",
        clock.now_millis()
    ))
    .await
    .unwrap();
    OldRows {
        idle,
        live,
        revoked,
        other_tenant,
    }
}

/// What a second `migrate` must leave untouched: the applied migrations
/// (with their times) and every table and index definition.
async fn schema_state(raw: &DatabaseConnection, backend: Backend) -> Vec<String> {
    let (db_backend, schema) = match backend {
        Backend::Sqlite => (
            DbBackend::Sqlite,
            "SELECT name || ': ' || COALESCE(sql, '') AS line FROM sqlite_master ORDER BY name",
        ),
        Backend::Postgres => (
            DbBackend::Postgres,
            "SELECT indexname || ': ' || indexdef AS line FROM pg_indexes \
             WHERE schemaname = current_schema() ORDER BY indexname",
        ),
    };
    let mut lines = Vec::new();
    for sql in [
        "SELECT version || ' ' || CAST(applied_at AS TEXT) AS line FROM seaql_migrations ORDER BY version",
        schema,
    ] {
        for row in raw
            .query_all_raw(Statement::from_string(db_backend, sql))
            .await
            .unwrap()
        {
            lines.push(row.try_get::<String>("", "line").unwrap());
        }
    }
    lines
}

/// `token-authority migrate`, as an operator (or a deploy job) runs it.
fn migrate_with_the_binary(database_url: &str) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_token-authority"))
        .args(["migrate", "--database-url", database_url])
        .env_remove("TOKEN_AUTHORITY_CONFIG")
        .env("TOKEN_AUTHORITY_LOG__FILTER", "warn")
        .output()
        .expect("token-authority runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn old_rows_work_after_the_upgrade(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.url = database_url(backend, &dir).await;
    config.keys.kek_file = Some(dir.path().join("token-authority.kek"));
    config.purge.enabled = false;
    // Creates the SQLite file, which the plain connection needs.
    Store::connect(&connect_settings(&config.database))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let raw = Database::connect(config.database.url.as_str())
        .await
        .unwrap();

    let names = migration_names();
    let previous = names
        .iter()
        .position(|n| n == PREVIOUS_RELEASE_LAST)
        .expect("the previous release's last migration exists")
        + 1;
    Migrator::up(&raw, Some(u32::try_from(previous).unwrap()))
        .await
        .unwrap();
    let pending: Vec<String> = Migrator::get_pending_migrations(&raw)
        .await
        .unwrap()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(
        pending,
        names[previous..],
        "the database is at the previous schema"
    );
    assert!(pending.iter().any(|n| n == "m20261202_000004_hot_rotation"));

    // Today's code names these columns; the previous release's rows have none.
    const ADDED_SINCE: [(&str, &str); 4] = [
        ("sessions", "client_id TEXT NOT NULL DEFAULT ''"),
        ("sessions", "cnf_x5t_s256 TEXT NULL"),
        ("sessions", "refresh_x5t_s256 TEXT NULL"),
        ("signing_keys", "withdrawn_at BIGINT"),
    ];
    for (table, column) in ADDED_SINCE {
        raw.execute_unprepared(&format!("ALTER TABLE {table} ADD COLUMN {column}"))
            .await
            .unwrap();
    }
    let old = fill_previous_release(&config, &raw).await;
    for (table, column) in ADDED_SINCE {
        let name = column.split_whitespace().next().unwrap_or_default();
        raw.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN {name}"))
            .await
            .unwrap();
    }

    migrate_with_the_binary(&config.database.url);
    assert!(Migrator::get_pending_migrations(&raw)
        .await
        .unwrap()
        .is_empty());
    let migrated = schema_state(&raw, backend).await;
    assert!(
        migrated
            .iter()
            .any(|l| l.starts_with("idx_sessions_live_of_subject")),
        "{migrated:#?}"
    );
    // A second run (the next replica to start) is a no-op.
    migrate_with_the_binary(&config.database.url);
    assert_eq!(schema_state(&raw, backend).await, migrated);

    let server = TestServer::start_with(backend, |c| *c = config.clone()).await;

    let claims = server.validate(&old.live.access_token).await.unwrap();
    assert_eq!(
        (claims.subject.as_str(), claims.session_id.as_str()),
        ("alice", old.live.session_id.as_str())
    );
    let renewed = server.refresh(&old.live.refresh_token).await.unwrap();
    let claims = server.validate(&renewed.access_token).await.unwrap();
    // Who issued an old session was not recorded: no client_id claim.
    assert_eq!(claims.client_id, "");
    assert!(access_token_payload(&renewed.access_token)
        .get("client_id")
        .is_none());

    assert_error(
        server.refresh(&old.revoked.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.validate(&old.revoked.access_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        server.refresh(&old.idle.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_EXPIRED",
    );

    let alice = server.list("acme", "alice").await;
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].session_id, old.live.session_id);
    assert_eq!(alice[0].refresh_count, 2);
    assert_eq!(alice[0].client_id, "");
    // Sessions from before the binding columns are bearer sessions.
    assert_eq!(alice[0].certificate_thumbprint, "");
    assert!(!alice[0].refresh_token_bound);
    assert!(access_token_payload(&renewed.access_token)
        .get("cnf")
        .is_none());
    assert!(server.list("acme", "bob").await.is_empty());
    assert_eq!(server.list("globex", "gina").await.len(), 1);

    let revoked = server
        .client()
        .revoke(pb::RevokeRequest {
            tenant_id: "globex".into(),
            target: Some(pb::revoke_request::Target::SessionId(
                old.other_tenant.session_id.clone(),
            )),
            reason: "after the upgrade".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_sessions, 1);
    assert_error(
        server.refresh(&old.other_tenant.refresh_token).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );

    // The old audit rows read back through the new RPC.
    let trail = server
        .admin_client()
        .list_audit_events(pb::ListAuditEventsRequest {
            session_id: old.revoked.session_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let kinds: Vec<&str> = trail.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["revoked", "issued"]);
    assert_eq!(trail[0].detail, "left the company (by anonymous)");
    let refusals = server
        .admin_client()
        .list_audit_events(pb::ListAuditEventsRequest {
            kinds: vec!["access_denied".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].caller, "intruder");

    // The purge deletes the old idle session.
    let rows = server.session_rows().await;
    let report = server.purger.purge_once().await.unwrap();
    assert!(!report.skipped);
    let idle_deleted = report
        .deleted
        .iter()
        .find(|(kind, _)| kind.reason() == "idle")
        .map(|(_, n)| *n);
    assert_eq!(idle_deleted, Some(1), "{report:?}");
    assert_eq!(server.session_rows().await, rows - 1);
    raw.close().await.unwrap();
}

crate::on_both_backends!(old_rows_work_after_the_upgrade);
