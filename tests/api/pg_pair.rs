//! A private PostgreSQL primary with a synchronous streaming standby, for
//! failover tests: kill the primary's postmaster, promote the standby.
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::processes::{as_postgres, free_port, run, running_as_root};

pub struct PgPair {
    dir: TempDir,
    bin: PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
}

/// Both servers.
const SETTINGS: &[&str] = &[
    "wal_level=replica",
    "max_wal_senders=4",
    "hot_standby=on",
    "synchronous_commit=on",
    "max_connections=200",
    // Speed only: the test kills processes, not the machine, so the page
    // cache holds what fsync would have written.
    "fsync=off",
];

/// What makes an acknowledged commit survive the loss of the primary: it
/// returns only once a standby has flushed its WAL. Not on the standby:
/// once promoted it has no standby of its own, and would block every
/// commit waiting for one.
const PRIMARY_ONLY: &[&str] = &["synchronous_standby_names='*'"];

impl PgPair {
    pub async fn start() -> Self {
        let bin = std::env::var_os("TA_TEST_POSTGRES_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        let dir = tempfile::tempdir().expect("temp dir");
        if running_as_root() {
            run(StdCommand::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path()));
        }
        let pair = Self {
            primary_port: free_port(),
            standby_port: free_port(),
            bin,
            dir,
        };
        run(as_postgres(&pair.bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "-E", "UTF8", "-D"])
            .arg(pair.data("primary")));
        pair.pg_ctl_start("primary", pair.primary_port, PRIMARY_ONLY);
        run(as_postgres(&pair.bin.join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "stream", "-R"])
            .args(["-p", &pair.primary_port.to_string()])
            .arg("-D")
            .arg(pair.data("standby")));
        pair.pg_ctl_start("standby", pair.standby_port, &[]);
        pair.wait_until_synchronous().await;
        pair
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pg_ctl_start(&self, name: &str, port: u16, extra: &[&str]) {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={}",
            self.dir.path().display()
        );
        for setting in SETTINGS.iter().chain(extra) {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        run(as_postgres(&self.bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "30", "-o", &options, "-l"])
            .arg(self.dir.path().join(format!("{name}.log")))
            .arg("-D")
            .arg(self.data(name)));
    }

    fn psql(&self, port: u16, sql: &str) -> String {
        let output = as_postgres(&self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-At", "-c", sql])
            .args(["-p", &port.to_string()])
            .output()
            .expect("psql runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    async fn wait_until_synchronous(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql(
            self.primary_port,
            "SELECT string_agg(sync_state, ',') FROM pg_stat_replication",
        ) != "sync"
        {
            assert!(
                Instant::now() < deadline,
                "the standby never became synchronous: {}",
                self.log("standby")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `postgres://…@primary,standby/postgres?target_session_attrs=read-write`.
    pub fn multi_host_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }

    pub fn standby_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.standby_port
        )
    }

    /// SIGKILL to the primary's postmaster (its backends exit on noticing).
    pub fn kill_primary(&self) {
        let pid_file = std::fs::read_to_string(self.data("primary").join("postmaster.pid"))
            .expect("primary's postmaster.pid");
        let pid = pid_file.lines().next().expect("pid line").trim().to_owned();
        run(StdCommand::new("kill").args(["-9", &pid]));
    }

    /// `pg_ctl promote -w`: returns once the standby accepts writes.
    pub fn promote_standby(&self) {
        run(as_postgres(&self.bin.join("pg_ctl"))
            .args(["promote", "-w", "-t", "30", "-D"])
            .arg(self.data("standby")));
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for name in ["standby", "primary"] {
            let _ = as_postgres(&self.bin.join("pg_ctl"))
                .args(["stop", "-m", "immediate", "-D"])
                .arg(self.data(name))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
