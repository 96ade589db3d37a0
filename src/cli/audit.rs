//! `token-authority audit`: the audit trail from the database, newest
//! first, as a table or as JSON lines.
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use humantime_serde::re::humantime;

use crate::app::App;
use crate::config::Config;
use crate::domain::audit_read::{AuditRecord, ListAuditEventsRequest};
use crate::domain::MAX_AUDIT_PAGE_SIZE;
use crate::verify::caller::Caller;
use crate::verify::clock::{Clock, Millis, SystemClock};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events of this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only events of this subject.
    #[arg(long)]
    subject: Option<String>,
    /// Only events of this session id.
    #[arg(long)]
    session: Option<String>,
    /// Only events of this kind (repeatable): issued, refreshed, revoked,
    /// reuse_detected, evicted, access_denied, key_rotated, token_exchanged,
    /// kek_rewrapped.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Events at or after: a duration ago (1h, 2d) or an RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    since: Option<TimeArg>,
    /// Events before: a duration ago or an RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    until: Option<TimeArg>,
    /// Print at most this many events.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy)]
enum TimeArg {
    Ago(Duration),
    At(SystemTime),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "expected a duration ago (e.g. 1h, 30m, 2d) or an RFC 3339 time (e.g. 2026-12-01T16:00:00Z)"
)]
struct TimeArgError;

fn parse_time(value: &str) -> Result<TimeArg, TimeArgError> {
    if let Ok(ago) = humantime::parse_duration(value) {
        return Ok(TimeArg::Ago(ago));
    }
    humantime::parse_rfc3339_weak(value)
        .map(TimeArg::At)
        .map_err(|_| TimeArgError)
}

impl TimeArg {
    fn millis(self, now: Millis) -> Millis {
        match self {
            TimeArg::Ago(d) => now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2),
            TimeArg::At(t) => t
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

pub async fn run(config: Config, args: AuditArgs) -> anyhow::Result<()> {
    let app = App::open(config, Arc::new(SystemClock)).await?;
    let now = SystemClock.now_millis();
    let mut request = ListAuditEventsRequest {
        tenant_id: args.tenant.unwrap_or_default(),
        subject: args.subject.unwrap_or_default(),
        session_id: args.session.unwrap_or_default(),
        kinds: args.kinds,
        since: args.since.map(|t| t.millis(now)),
        until: args.until.map(|t| t.millis(now)),
        ..Default::default()
    };
    // The operator has the database: every tenant.
    let operator = Caller::anonymous();
    if !args.json {
        print_header();
    }
    let mut remaining = args.limit;
    while remaining > 0 {
        request.page_size = remaining.min(MAX_AUDIT_PAGE_SIZE);
        let page = app
            .authority
            .list_audit_events(&operator, request.clone())
            .await?;
        remaining -= u32::try_from(page.events.len()).unwrap_or(remaining);
        for event in &page.events {
            if args.json {
                println!("{}", json_line(event));
            } else {
                print_row(event);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    app.shutdown().await;
    Ok(())
}

fn time(ms: Millis) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .unwrap_or_default()
}

fn print_header() {
    println!(
        "{:<24} {:>8} {:<14} {:<12} {:<20} {:<36} {:<16} detail",
        "occurred at", "id", "kind", "tenant", "subject", "session", "caller"
    );
}

fn print_row(e: &AuditRecord) {
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    println!(
        "{:<24} {:>8} {:<14} {:<12} {:<20} {:<36} {:<16} {}",
        time(e.occurred_at),
        e.id,
        e.kind,
        dash(&e.tenant_id),
        dash(&e.subject),
        dash(e.session_id.as_deref().unwrap_or_default()),
        dash(e.acting_caller().unwrap_or_default()),
        e.detail.as_deref().unwrap_or_default(),
    );
}

fn json_line(e: &AuditRecord) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "kind": e.kind,
        "occurred_at": time(e.occurred_at),
        "occurred_at_ms": e.occurred_at,
        "tenant_id": e.tenant_id,
        "subject": e.subject,
        "session_id": e.session_id,
        "caller": e.acting_caller(),
        "detail": e.detail,
    })
}
