//! `ListAuditEvents`: the audit trail, newest first, one page at a time.
//!
//! Pages are keyset-paginated on `(occurred_at, id)`: a page token holds
//! the position of the last event returned, so every event that existed
//! when the first page was read is returned exactly once, however many are
//! appended meanwhile (and without the cost of an OFFSET). The token also
//! holds a fingerprint of the filters, so it cannot be replayed against
//! another query.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use uuid::Uuid;

use super::Authority;
use crate::audit::AuditKind;
use crate::audit_read::{AuditEventPage, AuditPosition, AuditQuery, ListAuditEventsRequest};
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::input;

/// Events per page when the request names no size.
pub const DEFAULT_AUDIT_PAGE_SIZE: u32 = 100;
/// Larger page sizes are clamped to this (as ListSessions does).
pub const MAX_AUDIT_PAGE_SIZE: u32 = 1000;

impl Authority {
    /// The caller sees only its tenants' events: a tenant filter outside
    /// them is TENANT_NOT_PERMITTED; without one, the query is limited to
    /// them.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        req: ListAuditEventsRequest,
    ) -> Result<AuditEventPage> {
        let mut query = audit_query(caller, &req)?;
        let page_size = match req.page_size {
            0 => DEFAULT_AUDIT_PAGE_SIZE,
            n => n.min(MAX_AUDIT_PAGE_SIZE),
        };
        let fingerprint = fingerprint(&req);
        query.before = decode_page_token(&req.page_token, &fingerprint)?;
        query.limit = u64::from(page_size) + 1;
        let mut events = self
            .within_budget(async { Ok(self.store.read_audit_events(&query).await?) })
            .await?;
        let next_page_token = if events.len() > page_size as usize {
            events.truncate(page_size as usize);
            events
                .last()
                .map(|e| encode_page_token(e.position(), &fingerprint))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(AuditEventPage {
            events,
            next_page_token,
        })
    }
}

/// The store query of a request, checked; `before` and `limit` unset.
fn audit_query(caller: &Caller, req: &ListAuditEventsRequest) -> Result<AuditQuery> {
    let tenants = if req.tenant_id.is_empty() {
        caller.tenant_filter()
    } else {
        input::tenant_id("tenant_id", &req.tenant_id)?;
        caller.check_tenant(&req.tenant_id)?;
        Some(vec![req.tenant_id.clone()])
    };
    let subject = non_empty(&req.subject)
        .map(|s| input::name("subject", s, input::MAX_SUBJECT).map(|()| s.to_owned()))
        .transpose()?;
    let session_id = non_empty(&req.session_id)
        .map(|s| {
            Uuid::try_parse(s)
                .map(|id| id.to_string())
                .map_err(|_| Error::invalid("session_id", "is not a session id"))
        })
        .transpose()?;
    let mut kinds = Vec::with_capacity(req.kinds.len());
    for name in &req.kinds {
        let kind = AuditKind::parse(name).ok_or_else(|| {
            let known: Vec<_> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
            Error::invalid(
                "kinds",
                format!("unknown kind {name:?}; one of {}", known.join(", ")),
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if let (Some(since), Some(until)) = (req.since, req.until) {
        if since >= until {
            return Err(Error::invalid("until", "must be later than since"));
        }
    }
    Ok(AuditQuery {
        tenants,
        subject,
        session_id,
        kinds,
        since: req.since,
        until: req.until,
        before: None,
        limit: 0,
    })
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// What a page token is bound to: the filters of the request (not the
/// page size, which may change from page to page).
fn fingerprint(req: &ListAuditEventsRequest) -> String {
    let mut kinds = req.kinds.clone();
    kinds.sort();
    kinds.dedup();
    let filters = format!(
        "{:?}",
        (
            &req.tenant_id,
            &req.subject,
            &req.session_id,
            kinds,
            req.since,
            req.until
        )
    );
    let hash = digest(&SHA256, filters.as_bytes());
    hash.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn encode_page_token(last: AuditPosition, fingerprint: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}:{fingerprint}", last.occurred_at, last.id))
}

fn decode_page_token(token: &str, fingerprint: &str) -> Result<Option<AuditPosition>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        Error::invalid(
            "page_token",
            "is not a page token returned by ListAuditEvents for these filters",
        )
    };
    if token.len() > input::MAX_PAGE_TOKEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some(at), Some(id), Some(bound_to)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if bound_to != fingerprint {
        return Err(invalid());
    }
    Ok(Some(AuditPosition {
        occurred_at: at.parse().map_err(|_| invalid())?,
        id: id.parse().map_err(|_| invalid())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_filters() {
        let req = ListAuditEventsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        };
        let print = fingerprint(&req);
        let at = AuditPosition {
            occurred_at: 1_700_000_000_000,
            id: 42,
        };
        let token = encode_page_token(at, &print);
        assert_eq!(decode_page_token(&token, &print).unwrap(), Some(at));
        let other = fingerprint(&ListAuditEventsRequest::default());
        assert!(decode_page_token(&token, &other).is_err());
        assert!(decode_page_token("not a token", &print).is_err());
        let forged = URL_SAFE_NO_PAD.encode(format!("x:1:{print}"));
        assert!(decode_page_token(&forged, &print).is_err());
        assert_eq!(decode_page_token("", &print).unwrap(), None);
    }
}
