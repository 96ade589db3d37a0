//! The query plans of the hot statements, as the database would run them
//! now, so that a test can pin the index each one uses: a planner that
//! switches to a worse index as a table grows (as SQLite's did for the
//! per-Issue cap query) then fails a test instead of slowing production.
//!
//! Every statement comes from the builder the store itself runs (the
//! `live_sessions_of` filter, `rotation_update`, the revocation feed's and
//! the purge's statement builders); only the column lists and ordering of
//! the session queries are repeated here, from the methods named beside them.
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Statement,
};

use token_authority_domain::audit_read::{AuditPosition, AuditQuery};
use token_authority_domain::ports::RevocationsFrom;
use token_authority_domain::rotation::Rotation;

use super::audit_reads::audit_query;
use super::entities::session::{self, Column};
use super::group_commit::postgres::{explain_rotation, ROTATE_BATCH};
use super::purge::{PurgeCutoffs, PurgeKind, PurgeResume};
use super::sessions::live_sessions_of;
use super::{Backend, Store, StoreResult};

/// One hot statement and the plan the database chose for it.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    /// A stable name for the statement, e.g. `issue_cap`.
    pub name: &'static str,
    /// The statement's SQL, with placeholders.
    pub sql: String,
    /// SQLite: the `EXPLAIN QUERY PLAN` details, one line each; PostgreSQL:
    /// the text of `EXPLAIN`.
    pub plan: String,
}

/// Example values the statements are planned with. The planner may choose
/// differently for different values (PostgreSQL plans a parameterised
/// statement with its values at first), so the caller picks realistic ones.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    pub tenant_id: String,
    pub subject: String,
    pub session_id: String,
    pub now: i64,
    pub cutoffs: PurgeCutoffs,
    pub purge_batch: u64,
    /// A revocation cursor that a replica that is up to date would hold.
    pub revocation_cursor: i64,
}

impl Store {
    /// The plan of every hot statement for `inputs`.
    pub async fn query_plans(&self, inputs: &PlanInputs) -> StoreResult<Vec<QueryPlan>> {
        let backend = self.conn().get_database_backend();
        let PlanInputs {
            tenant_id,
            subject,
            session_id,
            now,
            ..
        } = inputs;
        let (tenant_id, subject, now) = (tenant_id.as_str(), subject.as_str(), *now);
        let mut statements: Vec<(&'static str, Statement)> = vec![
            // `insert_session`: the live sessions of the subject, least
            // recently used first.
            (
                "issue_cap",
                live_sessions_of(tenant_id, subject, now)
                    .select_only()
                    .column(Column::Id)
                    .column(Column::CreatedAt)
                    .order_by_asc(Column::LastUsedAt)
                    .order_by_asc(Column::Id)
                    .build(backend),
            ),
            // `live_sessions` (ListSessions), a page after a cursor.
            (
                "list_sessions",
                live_sessions_of(tenant_id, subject, now)
                    .filter(Column::Id.gt(session_id.as_str()))
                    .order_by_asc(Column::Id)
                    .limit(100)
                    .build(backend),
            ),
            // `revoke_subject`: the candidates.
            (
                "revoke_subject",
                live_sessions_of(tenant_id, subject, now)
                    .select_only()
                    .column(Column::Id)
                    .build(backend),
            ),
            // `session`, `revoke_session`: one row by id.
            (
                "session_by_id",
                session::Entity::find_by_id(session_id.clone()).build(backend),
            ),
            (
                "revocations_by_cursor",
                self.revocations_statement(RevocationsFrom::Cursor(inputs.revocation_cursor)),
            ),
            (
                "revocations_since",
                self.revocations_statement(RevocationsFrom::Since(inputs.cutoffs.revoked_before)),
            ),
        ];
        // `read_audit_events` (ListAuditEvents): a session's trail, the
        // newest events after a page cursor, and a subject's events.
        let page = |query: AuditQuery| {
            audit_query(&AuditQuery {
                limit: 101,
                ..query
            })
        };
        statements.extend([
            (
                "audit_newest_page",
                page(AuditQuery {
                    before: Some(AuditPosition {
                        occurred_at: now - 3_600_000,
                        id: i64::MAX,
                    }),
                    ..Default::default()
                })
                .build(backend),
            ),
            (
                "audit_of_subject",
                page(AuditQuery {
                    tenants: Some(vec![tenant_id.to_owned()]),
                    subject: Some(subject.to_owned()),
                    ..Default::default()
                })
                .build(backend),
            ),
        ]);
        let (from_digest, to_digest) = ([0_u8; 32], [1_u8; 32]);
        let tenants = [tenant_id.to_owned()];
        let rotation = Rotation {
            session_id,
            tenants: Some(&tenants),
            from_generation: 0,
            from_digest: &from_digest,
            to_digest: &to_digest,
            now,
            idle_expires_at: now + 3_600_000,
            device_name: Some("plan"),
            user_agent: None,
            ip: None,
            presenter: None,
            requested_binding: None,
            binding_required: &[],
        };
        // The rotation: on SQLite the conditional UPDATE each rotation of a
        // batch runs; on PostgreSQL the batch statement (planned below).
        if self.backend() == Backend::Sqlite {
            statements.push((
                "rotation_update",
                self.rotation_update(&rotation).build(backend),
            ));
        }
        for kind in PurgeKind::ALL {
            let name = match kind {
                PurgeKind::SessionsExpired => "purge_sessions_expired",
                PurgeKind::SessionsIdle => "purge_sessions_idle",
                PurgeKind::SessionsRevoked => "purge_sessions_revoked",
                PurgeKind::AuditEvents => "purge_audit_events",
                PurgeKind::SigningKeysRetired => "purge_signing_keys",
            };
            // The idle sweep plans its window bound and its bounded delete.
            let resume = PurgeResume::after_id(session_id);
            if kind == PurgeKind::SessionsIdle {
                statements.push((
                    "purge_sessions_idle_window",
                    self.idle_window_statement(Some(&resume), inputs.purge_batch),
                ));
            }
            statements.push((
                name,
                self.purge_statement(
                    kind,
                    &inputs.cutoffs,
                    inputs.purge_batch,
                    Some(&resume),
                    Some(session_id),
                ),
            ));
        }
        // Not a query of the store: a statement no index serves, so that
        // the test sees what a full scan looks like in this backend's words.
        statements.push((
            "full_scan_probe",
            session::Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(Column::Scopes.eq("probe"))
                .build(backend),
        ));
        let mut plans = Vec::with_capacity(statements.len() + 1);
        if self.backend() == Backend::Postgres {
            plans.push(QueryPlan {
                name: "rotation_update",
                sql: ROTATE_BATCH.to_owned(),
                plan: explain_rotation(self, &rotation).await?,
            });
        }
        for (name, statement) in statements {
            plans.push(QueryPlan {
                name,
                sql: statement.sql.clone(),
                plan: self.explain(statement).await?,
            });
        }
        Ok(plans)
    }

    async fn explain(&self, statement: Statement) -> StoreResult<String> {
        let Statement {
            sql,
            values,
            db_backend,
        } = statement;
        let (prefix, column) = match self.backend() {
            Backend::Sqlite => ("EXPLAIN QUERY PLAN ", "detail"),
            Backend::Postgres => ("EXPLAIN (COSTS OFF) ", "QUERY PLAN"),
        };
        let explain = Statement {
            sql: format!("{prefix}{sql}"),
            values,
            db_backend,
        };
        let rows = self.conn().query_all_raw(explain).await?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            lines.push(row.try_get::<String>("", column)?);
        }
        Ok(lines.join("\n"))
    }

    /// Runs `ANALYZE` (both backends), so that plans reflect the rows.
    pub async fn analyze(&self) -> StoreResult<()> {
        self.conn().execute_unprepared("ANALYZE").await?;
        Ok(())
    }
}
