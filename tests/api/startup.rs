//! Start-up: SIGTERM is honoured at every point, configuration errors that
//! no retry can fix end the process at once, the SQLite files are private
//! to their owner, and Kubernetes' service-link variables are ignored.
use std::os::unix::fs::PermissionsExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::common::*;
use crate::db_proxy::{upstream_of, DbProxy, Mode};
use crate::processes::TEST_KEK;

/// `token-authority serve` on `database_url`, not waiting for it to serve.
fn spawn_serve(database_url: &str, dir: &std::path::Path) -> (Child, std::path::PathBuf) {
    let log = crate::logs::child_log_path("startup", &dir.join("serve.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_token-authority"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .current_dir(dir)
        .env("TOKEN_AUTHORITY_LOG__FILTER", crate::logs::FILTER)
        .env("TOKEN_AUTHORITY_KEK", TEST_KEK)
        .env("TOKEN_AUTHORITY_DATABASE__CONNECT_TIMEOUT", "1s")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn token-authority");
    (child, log)
}

async fn exits_within(child: &mut Child, bound: Duration, log: &std::path::Path) -> ExitStatus {
    match tokio::time::timeout(bound, child.wait()).await {
        Ok(status) => status.expect("reaped"),
        Err(_) => panic!(
            "still running after {bound:?}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// While the database refuses connections (retrying with backoff) and
/// while a connection attempt hangs on a database that never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_waiting_for_the_database_stops_serve_promptly() {
    let url = fresh_postgres_database().await;
    let proxy = DbProxy::start(upstream_of(&url)).await;
    for mode in [Mode::Refuse, Mode::Stall] {
        proxy.set(mode).await;
        let dir = tempfile::tempdir().unwrap();
        let (mut child, log) = spawn_serve(&proxy.url_for(&url), dir.path());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "{mode:?}: exited early"
        );
        let sent = Instant::now();
        sigterm(&child);
        let status = exits_within(&mut child, Duration::from_secs(3), &log).await;
        assert!(status.success(), "{mode:?}: {status}");
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(log.contains("stopped before serving"), "{mode:?}: {log}");
        eprintln!("{mode:?}: stopped {:?} after SIGTERM", sent.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_folder_that_does_not_exist_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing").join("x.db");
    let (mut child, log) = spawn_serve(&format!("sqlite://{}", missing.display()), dir.path());
    let status = exits_within(&mut child, Duration::from_secs(5), &log).await;
    assert!(!status.success());
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("does not exist"), "{log}");
    assert!(
        !log.contains("retrying"),
        "retried a configuration error: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_files_are_private_to_their_owner() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.issue("acme", "alice").await;
    let db = server
        .config
        .database
        .url
        .trim_start_matches("sqlite://")
        .to_owned();
    for file in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}: {:o}", mode & 0o777);
    }
}

/// Kubernetes injects service-link variables for a Service named
/// `token-authority`; they share our prefix and must not stop the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_link_variables_are_not_settings() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/k8s.db", dir.path().display());
    let replica = crate::processes::Replica::start(
        &url,
        &[
            ("TOKEN_AUTHORITY_PORT", "tcp://10.96.0.12:50051"),
            ("TOKEN_AUTHORITY_PORT_50051_TCP", "tcp://10.96.0.12:50051"),
            ("TOKEN_AUTHORITY_PORT_50051_TCP_ADDR", "10.96.0.12"),
            ("TOKEN_AUTHORITY_PORT_50051_TCP_PORT", "50051"),
            ("TOKEN_AUTHORITY_PORT_50051_TCP_PROTO", "tcp"),
            ("TOKEN_AUTHORITY_SERVICE_HOST", "10.96.0.12"),
            ("TOKEN_AUTHORITY_SERVICE_PORT", "50051"),
            ("TOKEN_AUTHORITY_SERVICE_PORT_GRPC", "50051"),
            // A variable of someone else's (or a typo): left out, with a warning.
            ("TOKEN_AUTHORITY_DATABSE__URL", "postgres://nowhere/db"),
            // A setting: applied.
            ("TOKEN_AUTHORITY_REQUEST_TIMEOUT", "4s"),
        ],
    )
    .await;
    issue_with(&mut replica.client(), "acme", "alice").await;
    let log = replica.log();
    assert!(
        log.contains("ignoring environment variable TOKEN_AUTHORITY_DATABSE__URL"),
        "{log}"
    );
    assert!(!log.contains("nowhere"), "the value is not logged: {log}");
    for link in ["TOKEN_AUTHORITY_PORT", "TOKEN_AUTHORITY_SERVICE_HOST"] {
        assert!(!log.contains(&format!("variable {link}")), "{link}: {log}");
    }
}
