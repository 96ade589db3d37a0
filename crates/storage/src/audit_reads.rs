//! Reading the audit trail back (`ListAuditEvents`, `token-authority audit`).
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

use token_authority_domain::audit_read::{AuditQuery, AuditRecord};

use super::entities::audit_event::{self, Column};
use super::{Store, StoreResult};

/// The statement of `query`, newest first. Kept apart so that the plan
/// test (`plans.rs`) explains exactly what the store runs.
pub(crate) fn audit_query(query: &AuditQuery) -> Select<audit_event::Entity> {
    let mut select = audit_event::Entity::find();
    if let Some(tenants) = &query.tenants {
        select = select.filter(Column::TenantId.is_in(tenants.iter().cloned()));
    }
    if let Some(subject) = &query.subject {
        select = select.filter(Column::Subject.eq(subject.as_str()));
    }
    if let Some(session_id) = &query.session_id {
        select = select.filter(Column::SessionId.eq(session_id.as_str()));
    }
    if !query.kinds.is_empty() {
        select = select.filter(Column::Kind.is_in(query.kinds.iter().map(|k| k.as_str())));
    }
    if let Some(since) = query.since {
        select = select.filter(Column::OccurredAt.gte(since));
    }
    if let Some(until) = query.until {
        select = select.filter(Column::OccurredAt.lt(until));
    }
    if let Some(before) = query.before {
        // `(occurred_at, id) < (t, i)`, with the redundant `occurred_at <= t`
        // as a range both planners can scan an index by.
        select = select
            .filter(Column::OccurredAt.lte(before.occurred_at))
            .filter(
                Condition::any()
                    .add(Column::OccurredAt.lt(before.occurred_at))
                    .add(Column::Id.lt(before.id)),
            );
    }
    select
        .order_by_desc(Column::OccurredAt)
        .order_by_desc(Column::Id)
        .limit(query.limit)
}

impl Store {
    pub async fn read_audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        if query.tenants.as_ref().is_some_and(Vec::is_empty) || query.limit == 0 {
            return Ok(Vec::new());
        }
        let rows = audit_query(query).all(self.conn()).await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.id,
                occurred_at: r.occurred_at,
                kind: r.kind,
                tenant_id: r.tenant_id,
                subject: r.subject,
                session_id: r.session_id,
                detail: r.detail,
            })
            .collect())
    }
}
