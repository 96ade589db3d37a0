//! Reading the audit trail back: the query a store answers, and the
//! request and page of `ListAuditEvents`.
use token_authority_verify::clock::Millis;

use crate::audit::AuditKind;

/// Where a page of events, newest first, ends: the next page holds the
/// events strictly older in `(occurred_at, id)` order. `id` breaks ties
/// between events of the same millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPosition {
    pub occurred_at: Millis,
    pub id: i64,
}

/// Which events a store returns, newest first. Every filter that is set
/// must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events of these tenants (`None`: any).
    pub tenants: Option<Vec<String>>,
    pub subject: Option<String>,
    pub session_id: Option<String>,
    /// Only these kinds (empty: any).
    pub kinds: Vec<AuditKind>,
    /// `occurred_at >= since`.
    pub since: Option<Millis>,
    /// `occurred_at < until`.
    pub until: Option<Millis>,
    /// Only events older than this position (the previous page's last).
    pub before: Option<AuditPosition>,
    pub limit: u64,
}

/// An event as stored. `kind` stays a string: a row written by a newer
/// release during a rolling upgrade may have a kind this one does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub occurred_at: Millis,
    pub kind: String,
    pub tenant_id: String,
    pub subject: String,
    pub session_id: Option<String>,
    pub detail: Option<String>,
}

impl AuditRecord {
    /// The caller that acted, where the trail records one: in the detail
    /// of `issued` ("by <caller>") and `revoked` ("<reason> (by <caller>)",
    /// appended last, after the caller's own reason) and `token_exchanged`
    /// ("…, by <caller>", last), as the subject of `key_rotated`,
    /// `kek_rewrapped` and `access_denied`.
    pub fn acting_caller(&self) -> Option<&str> {
        let detail = self.detail.as_deref();
        match AuditKind::parse(&self.kind)? {
            AuditKind::Issued => detail?.strip_prefix("by "),
            AuditKind::Revoked => {
                let detail = detail?;
                match detail.strip_suffix(')') {
                    Some(rest) => rest.rsplit_once(" (by ").map(|(_, by)| by),
                    None => detail.strip_prefix("revoked by "),
                }
            }
            AuditKind::TokenExchanged => detail?.rsplit_once(", by ").map(|(_, by)| by),
            AuditKind::KeyRotated
            | AuditKind::KeyWithdrawn
            | AuditKind::AccessDenied
            | AuditKind::KekRewrapped => Some(&self.subject),
            _ => None,
        }
    }

    pub fn position(&self) -> AuditPosition {
        AuditPosition {
            occurred_at: self.occurred_at,
            id: self.id,
        }
    }
}

/// `ListAuditEvents`: empty strings and `None` do not filter.
#[derive(Debug, Clone, Default)]
pub struct ListAuditEventsRequest {
    pub tenant_id: String,
    pub subject: String,
    pub session_id: String,
    /// Stored kind names (`AuditKind::as_str`).
    pub kinds: Vec<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub page_size: u32,
    pub page_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventPage {
    pub events: Vec<AuditRecord>,
    /// Empty on the last page.
    pub next_page_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: AuditKind, subject: &str, detail: &str) -> AuditRecord {
        AuditRecord {
            id: 1,
            occurred_at: 0,
            kind: kind.as_str().to_owned(),
            tenant_id: "acme".into(),
            subject: subject.into(),
            session_id: None,
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn the_acting_caller_is_read_where_the_trail_records_it() {
        let cases = [
            (AuditKind::Issued, "alice", "by login", Some("login")),
            (AuditKind::Revoked, "alice", "revoked by ops", Some("ops")),
            (
                AuditKind::Revoked,
                "alice",
                "left (by x) (by ops)",
                Some("ops"),
            ),
            (
                AuditKind::KeyRotated,
                "cli:root",
                "kid k1",
                Some("cli:root"),
            ),
            (
                AuditKind::AccessDenied,
                "intruder",
                "Issue: …",
                Some("intruder"),
            ),
            (
                AuditKind::TokenExchanged,
                "alice",
                "api -> billing, scope \"read\", by orders",
                Some("orders"),
            ),
            (AuditKind::Refreshed, "alice", "generation 1", None),
        ];
        for (kind, subject, detail, caller) in cases {
            assert_eq!(
                record(kind, subject, detail).acting_caller(),
                caller,
                "{detail}"
            );
        }
    }
}
