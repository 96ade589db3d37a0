//! PostgreSQL: every rotation of a batch in one statement, and every issue
//! of a batch in one transaction.
//!
//! The rotation statement takes the batch as arrays (`unnest`), so its text
//! is the same for every batch size: one prepared statement per connection,
//! parsed and planned once. Each input row keeps the conditions of a single
//! rotation (id, generation, digest, live, tenant filter); the audit rows
//! are inserted by the same statement (a data-modifying CTE), so a rotation
//! and its audit row commit together or not at all. Raw sqlx rather than
//! SeaORM: SeaORM has no array binds without an extra feature, and this is
//! the hottest statement of the service.
use sea_orm::sqlx::postgres::{PgArguments, PgRow};
use sea_orm::sqlx::{self, Row};
use sea_orm::TransactionTrait;

use token_authority_domain::ports::Inserted;
use token_authority_domain::rotation::Rotation;
use token_authority_domain::session::Session;

use super::{answer, issue_reply, issues, rotate_reply, IssueJob, RotateJob};
use crate::{Store, StoreResult};

/// `rotated_at` is the database's clock (see `db_clock`); `last_used_at`
/// and the audit time are the service's, like every other audit event.
/// `COALESCE` keeps a device field that the refresh did not send.
/// `client_id` is only returned: it is the issuer's for the whole session.
/// So are the binding columns, read as conditions (`Rotation::binding_refusal`):
/// a refresher must present a bound refresh token's certificate, may not
/// ask for a binding other than the session's, and must ask for one for an
/// unbound session of a tenant that requires it (`required`).
///
/// The liveness conditions are written so that no index can serve them
/// (`revoked_at IS NULL` would match the partial index of live sessions):
/// the primary key is then the only index the planner may use. Measured
/// with stale statistics (a table grown from 32 to 16,000 rows within a
/// minute, before autovacuum's first ANALYZE): with `revoked_at IS NULL`
/// PostgreSQL scanned every live session through that index per batch
/// (3,900 → 350 refreshes/s); written this way, 3,400 → 2,800/s.
/// The plan is prepared and reused per connection: planning this
/// statement costs ~0.6 ms, executing a cached plan ~0.05 ms.
/// Input
/// rows are sorted by session id, so that two replicas' batches touching
/// the same sessions usually lock them in the same order; a deadlock that
/// PostgreSQL breaks all the same is answered as unavailable (40P01) and
/// retried by the client, and nothing of the losing batch was written.
pub(crate) const ROTATE_BATCH: &str = "\
WITH input AS (
  SELECT * FROM unnest($1::int4[], $2::text[], $3::int8[], $4::bytea[], $5::bytea[],
                       $6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::bool[],
                       $15::text[], $16::text[])
    AS i(ord, id, from_generation, from_digest, to_digest, now, idle_expires_at,
         device_name, user_agent, ip, audit, tenant_filtered, presenter, requested_binding)
  ORDER BY id
), allowed AS (
  SELECT * FROM unnest($13::int4[], $14::text[]) AS a(ord, tenant_id)
), required AS (
  SELECT * FROM unnest($17::int4[], $18::text[]) AS r(ord, tenant_id)
), rotated AS (
  UPDATE sessions s SET
    generation = i.from_generation + 1,
    token_digest = i.to_digest,
    previous_digest = i.from_digest,
    rotated_at = (EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::BIGINT,
    last_used_at = i.now,
    idle_expires_at = i.idle_expires_at,
    device_name = COALESCE(i.device_name, s.device_name),
    user_agent = COALESCE(i.user_agent, s.user_agent),
    ip = COALESCE(i.ip, s.ip)
  FROM input i
  WHERE s.id = i.id
    AND s.generation = i.from_generation
    AND s.token_digest = i.from_digest
    AND COALESCE(s.revoked_at, -1) < 0
    AND s.expires_at - i.now > 0
    AND s.idle_expires_at - i.now > 0
    AND (NOT i.tenant_filtered
         OR EXISTS (SELECT 1 FROM allowed a WHERE a.ord = i.ord AND a.tenant_id = s.tenant_id))
    AND (s.refresh_x5t_s256 IS NULL OR s.refresh_x5t_s256 = i.presenter)
    AND (i.requested_binding IS NULL OR s.cnf_x5t_s256 IS NULL OR s.cnf_x5t_s256 = i.requested_binding)
    AND (i.requested_binding IS NOT NULL OR s.cnf_x5t_s256 IS NOT NULL
         OR NOT EXISTS (SELECT 1 FROM required r WHERE r.ord = i.ord AND r.tenant_id = s.tenant_id))
  RETURNING i.ord, i.audit, s.id, s.tenant_id, s.subject, s.audience, s.scopes, s.extra_claims,
            s.client_id, s.generation, s.token_digest, s.previous_digest, s.rotated_at,
            s.created_at, s.last_used_at, s.expires_at, s.idle_expires_at, s.revoked_at,
            s.revoke_reason, s.revocation_seq, s.device_name, s.user_agent, s.ip,
            s.cnf_x5t_s256, s.refresh_x5t_s256
), audited AS (
  INSERT INTO audit_events (occurred_at, kind, tenant_id, subject, session_id, detail)
  SELECT last_used_at, 'refreshed', tenant_id, subject, id, 'generation ' || generation
  FROM rotated WHERE audit
)
SELECT * FROM rotated";

/// How long a connection keeps its cached plan of `ROTATE_BATCH`.
///
/// PostgreSQL keeps a prepared statement's generic plan until an ANALYZE
/// of the table invalidates it. A plan cached while `sessions` was a page
/// or two (a new deployment) reads the whole table per batch, cheapest
/// then, and autovacuum analyzes at most once a minute: measured over three
/// rounds of growth to 16,000 rows, 2,100 → 1,100 → 790 refreshes/s, where
/// the one-statement-per-refresh code it replaced stayed at 1,400/s.
/// Planning the statement for every execution instead costs ~0.6 ms (a
/// cached plan runs in ~0.05 ms), a regression at low concurrency. So the
/// statement text carries an epoch that changes every `REPLAN_EVERY`: each
/// connection prepares and plans it anew (with the table's current size)
/// once per epoch. `pg_stat_statements` ignores the comment.
const REPLAN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn plan_epoch() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    elapsed.as_secs() / REPLAN_EVERY.as_secs()
}

pub(super) async fn rotate(store: &Store, jobs: Vec<RotateJob>) {
    let outcomes = rotate_all(store, &jobs).await;
    answer(jobs, outcomes, rotate_reply);
}

async fn rotate_all(store: &Store, jobs: &[RotateJob]) -> StoreResult<Vec<Option<Session>>> {
    let sql = sqlx::AssertSqlSafe(format!("/* plan {} */ {ROTATE_BATCH}", plan_epoch()));
    let rows = bind_batch(sqlx::query(sql), jobs)
        .fetch_all(store.conn().get_postgres_connection_pool())
        .await?;
    let mut outcomes: Vec<Option<Session>> = (0..jobs.len()).map(|_| None).collect();
    for row in rows {
        let ord: i32 = row.try_get("ord")?;
        if let Some(slot) = usize::try_from(ord).ok().and_then(|i| outcomes.get_mut(i)) {
            *slot = Some(session(&row)?);
        }
    }
    Ok(outcomes)
}

/// The batch's columns, one array each, in the order of `ROTATE_BATCH`.
fn bind_batch<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, PgArguments>,
    jobs: &'q [RotateJob],
) -> sqlx::query::Query<'q, sqlx::Postgres, PgArguments> {
    let mut allowed_ord = Vec::new();
    let mut allowed_tenant = Vec::new();
    let mut required_ord = Vec::new();
    let mut required_tenant = Vec::new();
    for (ord, job) in (0i32..).zip(jobs) {
        for tenant in job.tenants.as_deref().into_iter().flatten() {
            allowed_ord.push(ord);
            allowed_tenant.push(tenant.as_str());
        }
        for tenant in job.binding_required() {
            required_ord.push(ord);
            required_tenant.push(tenant.as_str());
        }
    }
    let column = |f: fn(&RotateJob) -> Option<&str>| jobs.iter().map(f).collect::<Vec<_>>();
    query
        .bind((0i32..).take(jobs.len()).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.session_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.from_generation).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.from_digest.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| j.to_digest.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.now).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.idle_expires_at).collect::<Vec<_>>())
        .bind(column(|j| j.device_name.as_deref()))
        .bind(column(|j| j.user_agent.as_deref()))
        .bind(column(|j| j.ip.as_deref()))
        .bind(jobs.iter().map(|j| j.audit).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.tenants.is_some()).collect::<Vec<_>>())
        .bind(allowed_ord)
        .bind(allowed_tenant)
        .bind(column(RotateJob::presenter))
        .bind(column(RotateJob::requested_binding))
        .bind(required_ord)
        .bind(required_tenant)
}

/// The plan PostgreSQL chooses for a batch of `rotation` alone (for
/// `Store::query_plans`); EXPLAIN without ANALYZE writes nothing.
pub(crate) async fn explain_rotation(
    store: &Store,
    rotation: &Rotation<'_>,
) -> StoreResult<String> {
    let jobs = [RotateJob::new(rotation, false).0];
    let sql = sqlx::AssertSqlSafe(format!("EXPLAIN (COSTS OFF) {ROTATE_BATCH}"));
    let rows = bind_batch(sqlx::query(sql), &jobs)
        .fetch_all(store.conn().get_postgres_connection_pool())
        .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        lines.push(row.try_get::<String, _>(0)?);
    }
    Ok(lines.join("\n"))
}

fn session(row: &PgRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        subject: row.try_get("subject")?,
        audience: row.try_get("audience")?,
        scopes: row.try_get("scopes")?,
        extra_claims: row.try_get("extra_claims")?,
        client_id: row.try_get("client_id")?,
        generation: row.try_get("generation")?,
        token_digest: row.try_get("token_digest")?,
        previous_digest: row.try_get("previous_digest")?,
        rotated_at: row.try_get("rotated_at")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoke_reason: row.try_get("revoke_reason")?,
        revocation_seq: row.try_get("revocation_seq")?,
        device_name: row.try_get("device_name")?,
        user_agent: row.try_get("user_agent")?,
        ip: row.try_get("ip")?,
        certificate_thumbprint: row.try_get("cnf_x5t_s256")?,
        refresh_thumbprint: row.try_get("refresh_x5t_s256")?,
    })
}

/// Issues of a batch in one transaction, in (tenant, subject) order: each
/// takes its subject's advisory lock (see `Store::make_room`), and two
/// replicas' batches then take the locks they share in the same order.
pub(super) async fn issue(store: &Store, mut jobs: Vec<IssueJob>) {
    jobs.sort_by(|a, b| {
        (&a.session.tenant_id, &a.session.subject).cmp(&(&b.session.tenant_id, &b.session.subject))
    });
    let outcomes = issue_all(store, &jobs).await;
    answer(jobs, outcomes, issue_reply);
}

async fn issue_all(store: &Store, jobs: &[IssueJob]) -> StoreResult<Vec<Inserted>> {
    let tx = store.conn().begin().await?;
    let inserted = issues::issue_all(store, &tx, jobs).await?;
    tx.commit().await?;
    Ok(inserted)
}
