//! A PostgreSQL failover under load: replicas on a multi-host URL follow
//! the promoted standby by themselves, and nothing acknowledged is lost.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::common::*;
use crate::pg_pair::PgPair;
use crate::processes::{session_rows, Replica};
use token_authority::proto::{self as pb, revoke_request::Target};

const SESSIONS: usize = 24;
const ENV: &[(&str, &str)] = &[
    ("TOKEN_AUTHORITY_TOKENS__REFRESH_RETRY_WINDOW", "10m"),
    ("TOKEN_AUTHORITY_LIMITS__REFRESH_PER_SESSION", "off"),
    ("TOKEN_AUTHORITY_DATABASE__ACQUIRE_TIMEOUT", "1s"),
    ("TOKEN_AUTHORITY_DATABASE__CONNECT_TIMEOUT", "1s"),
];

/// What every call of the load saw, by time since the start.
#[derive(Default)]
struct Record {
    /// (sent at, latency) of every successful refresh.
    refreshed: Vec<(Duration, Duration)>,
    /// Per refreshing client: its first failure and its next success.
    outages: Vec<(Duration, Duration)>,
    /// (at, call, code, reason) of every failed call.
    failed: Vec<(Duration, &'static str, Code, String)>,
    unavailable_without_retry_info: u32,
}

impl Record {
    fn fail(&mut self, at: Duration, call: &'static str, status: &Status) {
        if status.code() == Code::Unavailable && status.get_details_retry_info().is_none() {
            self.unavailable_without_retry_info += 1;
        }
        let reason = status
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default();
        self.failed.push((at, call, status.code(), reason));
    }
}

struct Load {
    start: Instant,
    stop: AtomicBool,
    record: Mutex<Record>,
}

impl Load {
    fn at(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Refreshes back to back with its last token; after an error, retries
/// that same token (a correct client: its last answer is lost or never came).
async fn refreshing_client(
    load: Arc<Load>,
    mut client: Client,
    mut last: pb::TokenPair,
) -> pb::TokenPair {
    let mut failing_since = None;
    while !load.stop.load(Ordering::Relaxed) {
        let sent = load.at();
        match refresh_with(&mut client, &last.refresh_token).await {
            Ok(next) => {
                last = next;
                {
                    let mut record = load.record.lock().unwrap();
                    record.refreshed.push((sent, load.at() - sent));
                    if let Some(since) = failing_since.take() {
                        record.outages.push((since, load.at()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => {
                failing_since.get_or_insert(load.at());
                load.record
                    .lock()
                    .unwrap()
                    .fail(load.at(), "refresh", &status);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    last
}

/// Issues and revokes sessions one after the other, retrying each call
/// until it is acknowledged; returns the acknowledged revocations' pairs.
async fn revoking_client(load: Arc<Load>, mut client: Client) -> Vec<(Duration, pb::TokenPair)> {
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let pair = loop {
            match client
                .issue(issue_request("acme", &format!("revoked-{n}")))
                .await
            {
                Ok(r) => break r.into_inner().tokens.expect("tokens"),
                Err(status) => load
                    .record
                    .lock()
                    .unwrap()
                    .fail(load.at(), "issue", &status),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let request = pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(Target::SessionId(pair.session_id.clone())),
            reason: "test".into(),
        };
        loop {
            match client.revoke(request.clone()).await {
                Ok(_) => break,
                Err(status) => load
                    .record
                    .lock()
                    .unwrap()
                    .fail(load.at(), "revoke", &status),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acknowledged.push((load.at(), pair));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acknowledged
}

/// Validates one live session's access token on `client` throughout;
/// returns how many calls failed, and how many were made.
async fn validating_client(load: Arc<Load>, mut client: Client, token: String) -> (u32, u32) {
    let (mut failed, mut calls) = (0, 0);
    while !load.stop.load(Ordering::Relaxed) {
        calls += 1;
        if validate_with(&mut client, &token).await.is_err() {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (failed, calls)
}

async fn eventually_revoked(
    client: &mut Client,
    token: &str,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Err(status) = validate_with(client, token).await {
            assert_eq!(reason(&status), "SESSION_REVOKED", "{status:?}");
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_a_promoted_standby_without_losing_acknowledged_writes() {
    let pair = PgPair::start().await;
    let url = pair.multi_host_url();
    let a = Replica::start(&url, ENV).await;
    let b = Replica::start(&url, ENV).await;

    let mut pairs = Vec::new();
    for i in 0..SESSIONS {
        let replica = if i % 2 == 0 { &a } else { &b };
        pairs.push(issue_with(&mut replica.client(), "acme", &format!("user-{i}")).await);
    }
    let watched = issue_with(&mut a.client(), "acme", "validated").await;

    // A sidecar following replica b through the failover.
    let watched_ids: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let sidecar = {
        let ids = watched_ids.clone();
        let mut stream = b
            .client()
            .watch_revocations(pb::WatchRevocationsRequest {
                cursor: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        tokio::spawn(async move {
            use token_authority::proto::watch_revocations_response::Event;
            while let Ok(Some(message)) = stream.message().await {
                let sessions = match message.event {
                    Some(Event::Revoked(r)) => r.sessions,
                    Some(Event::Snapshot(s)) => s.revoked,
                    _ => continue,
                };
                let mut ids = ids.lock().unwrap();
                ids.extend(sessions.into_iter().map(|s| s.session_id));
            }
        })
    };

    let load = Arc::new(Load {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        record: Mutex::default(),
    });
    let refreshers = tokio::spawn(futures::future::join_all(
        pairs.into_iter().enumerate().map(|(i, pair)| {
            let replica = if i % 2 == 0 { &a } else { &b };
            refreshing_client(load.clone(), replica.client(), pair)
        }),
    ));
    let revoker = tokio::spawn(revoking_client(load.clone(), a.client()));
    let validators =
        tokio::spawn(futures::future::join_all([&a, &b].map(|r| {
            validating_client(load.clone(), r.client(), watched.access_token.clone())
        })));

    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = load.at();
    pair.kill_primary();
    eprintln!("{killed_at:>8.2?} kill -9 the primary's postmaster");
    // What a failover manager's detection would take.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promoting_at = load.at();
    pair.promote_standby();
    let promoted_at = load.at();
    eprintln!("{promoting_at:>8.2?} pg_ctl promote the standby");
    eprintln!("{promoted_at:>8.2?} the standby is primary");

    // Until every client has refreshed since the promotion, then a little more.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recovered = {
            let record = load.record.lock().unwrap();
            record
                .refreshed
                .iter()
                .filter(|(at, _)| *at > promoted_at)
                .count()
        };
        if recovered >= SESSIONS * 3 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop.store(true, Ordering::Relaxed);
    let stopped_at = load.at();
    let lasts = refreshers.await.unwrap();
    let revoked = revoker.await.unwrap();
    let validated = validators.await.unwrap();

    // Figures.
    let record = std::mem::take(&mut *load.record.lock().unwrap());
    let first_failure = record
        .failed
        .iter()
        .filter(|(_, call, _, _)| *call == "refresh")
        .map(|(at, _, _, _)| *at)
        .min();
    // A refresh sent after the first failure: one sent before and answered
    // late had its commit done before the kill.
    let first_success_after = first_failure.and_then(|f| {
        record
            .refreshed
            .iter()
            .map(|(sent, latency)| (*sent, *sent + *latency))
            .filter(|(sent, _)| *sent > f)
            .map(|(_, answered)| answered)
            .min()
    });
    let last_failure = record.failed.iter().map(|(at, _, _, _)| *at).max();
    let longest_client_outage = record
        .outages
        .iter()
        .map(|(from, to)| *to - *from)
        .max()
        .unwrap_or_default();
    let mut latencies: Vec<Duration> = record.refreshed.iter().map(|(_, l)| *l).collect();
    latencies.sort();
    let mut before: Vec<Duration> = record
        .refreshed
        .iter()
        .filter(|(at, _)| *at < killed_at)
        .map(|(_, l)| *l)
        .collect();
    before.sort();
    let mut by_code: BTreeMap<String, u32> = BTreeMap::new();
    for (_, call, code, reason) in &record.failed {
        *by_code
            .entry(format!("{call}: {code:?} {reason}"))
            .or_default() += 1;
    }
    if let Some(f) = first_failure {
        eprintln!("{f:>8.2?} first failed call");
    }
    if let Some(s) = first_success_after {
        eprintln!("{s:>8.2?} first successful refresh after it");
    }
    if let Some(l) = last_failure {
        eprintln!("{l:>8.2?} last failed call");
    }
    eprintln!("{stopped_at:>8.2?} load stopped");
    let window = first_failure.zip(first_success_after).map(|(f, s)| s - f);
    eprintln!("failover window as the client sees it (first failed refresh to the first successful one sent after it): {window:?}");
    eprintln!(
        "longest outage of one client (its first failure to its next success): {longest_client_outage:?} over {} clients that saw one",
        record.outages.len()
    );
    eprintln!(
        "refreshes: {} ok over {stopped_at:.1?}; p50 {:?}, p99 {:?}, max {:?} (before the kill: p50 {:?}, p99 {:?})",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        percentile(&before, 0.50),
        percentile(&before, 0.99),
    );
    eprintln!("errors by code: {by_code:?}");
    eprintln!("revocations acknowledged: {}", revoked.len());
    eprintln!("validate (failed, calls) on a, b: {validated:?}");
    let unavailable_without_retry_info = record.unavailable_without_retry_info;
    let failed = record.failed;

    // Only UNAVAILABLE, with RetryInfo, during the switch; never INTERNAL.
    assert!(
        failed
            .iter()
            .all(|(_, _, code, _)| *code == Code::Unavailable),
        "{by_code:?}"
    );
    assert_eq!(unavailable_without_retry_info, 0);
    assert!(
        first_failure.is_some(),
        "the failover went unnoticed: no load?"
    );
    assert!(
        window.is_some_and(|w| w < Duration::from_secs(15)),
        "window {window:?}"
    );
    // Validate answers from memory throughout.
    for (failures, calls) in &validated {
        assert_eq!(*failures, 0, "Validate failed during the failover");
        assert!(*calls > 0);
    }

    // Sessions lost: every client's last token still refreshes, on either replica.
    let mut lost = 0;
    for (i, last) in lasts.iter().enumerate() {
        let replica = if i % 2 == 0 { &b } else { &a };
        if let Err(status) = refresh_with(&mut replica.client(), &last.refresh_token).await {
            eprintln!("session {} lost: {status:?}", last.session_id);
            lost += 1;
        }
    }
    eprintln!("sessions lost: {lost}");
    let rows = session_rows(&pair.standby_url()).await;
    let self_revoked: Vec<_> = rows
        .iter()
        .filter(|r| r.subject.starts_with("user-") && r.revoked_at.is_some())
        .map(|r| (&r.subject, &r.revoke_reason))
        .collect();
    eprintln!("load sessions revoked by the service: {self_revoked:?}");

    // Revocations lost: each acknowledged one holds on both replicas and on
    // a replica started after the failover (it reads the new primary only).
    let late = Replica::start(&url, ENV).await;
    let mut revocations_lost = 0;
    for (_, pair) in &revoked {
        for replica in [&a, &b, &late] {
            if eventually_revoked(
                &mut replica.client(),
                &pair.access_token,
                Duration::from_secs(3),
            )
            .await
            .is_none()
            {
                revocations_lost += 1;
            }
        }
        let refreshed = refresh_with(&mut a.client(), &pair.refresh_token).await;
        assert!(refreshed.is_err(), "a revoked session refreshed");
    }
    eprintln!("revocations lost: {revocations_lost}");
    let mut missed_by_sidecar = revoked.len();
    for _ in 0..100 {
        missed_by_sidecar = {
            let ids = watched_ids.lock().unwrap();
            revoked
                .iter()
                .filter(|(_, p)| !ids.contains(&p.session_id))
                .count()
        };
        if missed_by_sidecar == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("acknowledged revocations the sidecar on b never received: {missed_by_sidecar}");
    sidecar.abort();

    // The feed resumes on the new primary: a revocation committed there
    // reaches the replica that read its cursor from the old one.
    let fresh = issue_with(&mut a.client(), "acme", "after-failover").await;
    revoke_with(&mut a.client(), "acme", &fresh.session_id).await;
    let delay =
        eventually_revoked(&mut b.client(), &fresh.access_token, Duration::from_secs(5)).await;
    eprintln!("revocation after the failover reached the other replica in {delay:?}");

    for replica in [&a, &b] {
        assert!(
            replica
                .log()
                .contains("switched the database pool to a new server"),
            "{}",
            replica.log()
        );
    }
    assert_eq!(lost, 0, "sessions lost");
    assert!(self_revoked.is_empty(), "{self_revoked:?}");
    assert_eq!(revocations_lost, 0);
    assert_eq!(missed_by_sidecar, 0, "the sidecar fell out of step");
    assert!(delay.is_some(), "the revocation feed did not resume");
    assert!(!revoked.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_is_unavailable_not_internal() {
    use sea_orm::ConnectionTrait;
    use token_authority_storage::{ConnectSettings, Store, StoreError};
    let pair = PgPair::start().await;

    // What a connection still open on a demoted primary gets for a write.
    let standby = sea_orm::Database::connect(pair.standby_url())
        .await
        .unwrap();
    let error = standby
        .execute_unprepared("CREATE TABLE t (x int)")
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("25006"), "{error:?}");
    assert!(StoreError::from(error).is_unavailable());

    // Only a standby in the list: no server to write to is "unavailable",
    // and the error names the host, never the password.
    let settings = ConnectSettings {
        url: format!(
            "postgres://postgres:secret@127.0.0.1:{}/postgres?target_session_attrs=read-write",
            pair.standby_port
        ),
        max_connections: None,
        acquire_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(1),
        sqlite_full_sync: false,
    };
    let error = Store::connect(&settings).await.err().expect("no primary");
    let message = error.to_string();
    assert!(error.is_unavailable(), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", pair.standby_port)),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
}

/// A primary that turns read-only under the replica (as one being demoted
/// does): writes answer UNAVAILABLE, never INTERNAL, and the pool's
/// connections to it are dropped; once it is writable again, writes work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_turning_read_only_is_unavailable_then_recovers() {
    use sea_orm::ConnectionTrait;
    let server = crate::processes::PgServer::start();
    let url = format!("{}?target_session_attrs=read-write", server.url());
    let replica = Replica::start(&url, ENV).await;
    let mut client = replica.client();
    let mut last = issue_with(&mut client, "acme", "demoted").await;
    last = refresh_with(&mut client, &last.refresh_token)
        .await
        .unwrap();

    let admin = sea_orm::Database::connect(server.url()).await.unwrap();
    let set_read_only = |on: bool| {
        let admin = admin.clone();
        async move {
            admin
                .execute_unprepared(&format!(
                    "ALTER SYSTEM SET default_transaction_read_only = {on}"
                ))
                .await
                .unwrap();
            admin
                .execute_unprepared("SELECT pg_reload_conf()")
                .await
                .unwrap();
        }
    };
    set_read_only(true).await;
    let started = Instant::now();
    let status = loop {
        match refresh_with(&mut client, &last.refresh_token).await {
            Ok(next) => last = next,
            Err(status) => break status,
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "read-only noticed after {:?}: {:?} {}",
        started.elapsed(),
        status.code(),
        reason(&status)
    );
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.get_details_retry_info().is_some());
    assert!(validate_with(&mut client, &last.access_token).await.is_ok());
    // The watcher's next probe sees it and drops the pool's connections.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        replica.log().contains("the database server changed role"),
        "{}",
        replica.log()
    );
    let refused = refresh_with(&mut client, &last.refresh_token).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unavailable);

    set_read_only(false).await;
    let started = Instant::now();
    loop {
        match refresh_with(&mut client, &last.refresh_token).await {
            Ok(_) => break,
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("writable again after {:?}", started.elapsed());
}
