//! Per-subject churn: what one subject logging in over and over costs.
//! 1. `login loop`: Issue for one subject, again and again (past the cap
//!    of 50 live sessions, Issue is refused until one is old enough to evict).
//! 2. `logout loop`: Issue then Revoke for one subject, piling up revoked
//!    rows for it.
//! 3. Issue for that subject next to Issue for fresh subjects (before and
//!    after the loops): the cap check reads live rows only, so the revoked
//!    pile must not show.
//!
//! Reports rows, the revoked set's size, the process's RSS and latencies.
use serde::Serialize;

use crate::load::{self, Budget, Stats, Step};
use crate::server::{BoxError, Target};
use crate::steps::{issue, Client};
use token_authority::proto::{self as pb, revoke_request::Target as RevokeTarget};

#[derive(Debug, Serialize)]
pub struct ChurnReport {
    pub phases: Vec<Stats>,
    pub session_rows: u64,
    pub revoked_set_entries: usize,
    pub rss_kib: Option<u64>,
}

struct SameSubject {
    client: Client,
    subject: String,
}

impl Step for SameSubject {
    async fn step(&mut self) -> Result<(), String> {
        issue(&mut self.client, self.subject.clone())
            .await
            .map(|_| ())
    }
}

struct IssueThenRevoke(SameSubject);

impl Step for IssueThenRevoke {
    async fn step(&mut self) -> Result<(), String> {
        let pair = issue(&mut self.0.client, self.0.subject.clone()).await?;
        self.0
            .client
            .revoke(pb::RevokeRequest {
                tenant_id: "load".into(),
                target: Some(RevokeTarget::SessionId(pair.session_id)),
                reason: "logout".into(),
            })
            .await
            .map(|_| ())
            .map_err(|s| format!("{:?}", s.code()))
    }
}

struct FreshSubjects {
    client: Client,
    worker: usize,
    n: u64,
    label: &'static str,
}

impl Step for FreshSubjects {
    async fn step(&mut self) -> Result<(), String> {
        self.n += 1;
        let subject = format!("{}-{}-{}", self.label, self.worker, self.n);
        issue(&mut self.client, subject).await.map(|_| ())
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(
    database_url: Option<&str>,
    concurrency: usize,
    issues: u64,
) -> Result<ChurnReport, BoxError> {
    let target = Target::start(None, database_url).await?;
    let same = |subject: &str| {
        (0..concurrency)
            .map(|_| SameSubject {
                client: target.client(),
                subject: subject.to_owned(),
            })
            .collect::<Vec<_>>()
    };
    let fresh = |label: &'static str| {
        let steps = (0..concurrency)
            .map(|worker| FreshSubjects {
                client: target.client(),
                worker,
                n: 0,
                label,
            })
            .collect();
        load::run(label, Budget::Requests(2000), steps)
    };
    let mut phases = vec![
        fresh("issue, fresh subjects, before").await,
        load::run(
            "login loop, one subject",
            Budget::Requests(issues),
            same("looper"),
        )
        .await,
    ];
    let logout: Vec<_> = same("leaver").into_iter().map(IssueThenRevoke).collect();
    phases.push(
        load::run(
            "logout loop (issue + revoke)",
            Budget::Requests(issues),
            logout,
        )
        .await,
    );
    // 40 more for the subject with the pile, below its cap of 50.
    phases.push(
        load::run(
            "issue, subject with the revoked pile",
            Budget::Requests(40),
            same("leaver"),
        )
        .await,
    );
    // The same for one subject without a pile: Issue for one subject is
    // serialised (PostgreSQL: an advisory lock), so compare like with like.
    phases.push(
        load::run(
            "issue, one subject without revoked sessions",
            Budget::Requests(40),
            same("control"),
        )
        .await,
    );
    phases.push(fresh("issue, fresh subjects, after").await);
    let store = target.store.clone().ok_or("in-process server")?;
    let report = ChurnReport {
        phases,
        session_rows: store.session_rows().await?,
        revoked_set_entries: target
            .authority
            .as_ref()
            .ok_or("in-process server")?
            .validator()
            .revoked_sessions()
            .len(),
        rss_kib: rss_kib(),
    };
    load::print_table(&report.phases);
    println!(
        "session rows {}, revoked-set entries {}, RSS {} KiB",
        report.session_rows,
        report.revoked_set_entries,
        report
            .rss_kib
            .map(|k| k.to_string())
            .unwrap_or_else(|| "?".into())
    );
    target.stop().await;
    Ok(report)
}
