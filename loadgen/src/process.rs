//! The real server binary as a separate process, and CPU time read from
//! /proc: the server's, the PostgreSQL cluster's and the driver's own.
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::server::BoxError;

/// `token-authority serve` on a loopback port; SIGKILLed if dropped unstopped.
pub struct ServerProcess {
    child: Child,
    pub channel: Channel,
    pub addr: SocketAddr,
    log: PathBuf,
}

fn free_port() -> Result<u16, BoxError> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The server binary next to this one (both are built into target/release).
pub fn default_binary() -> Result<PathBuf, BoxError> {
    Ok(std::env::current_exe()?.with_file_name("token-authority"))
}

impl ServerProcess {
    /// Starts `binary serve` on `database_url`. Replicas sharing a database
    /// must share `dir`: the key-encryption key file is created there by the
    /// first one. Settings as for the in-process server: no rate limits, no
    /// purge, SQLite `synchronous=FULL` (the default, set explicitly).
    pub async fn start(
        binary: &Path,
        database_url: &str,
        dir: &Path,
        name: &str,
    ) -> Result<Self, BoxError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(binary)
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--database-url",
                database_url,
            ])
            .current_dir(dir)
            .env("TOKEN_AUTHORITY_LOG__FILTER", "warn")
            .env("TOKEN_AUTHORITY_KEYS__KEK_FILE", dir.join("bench.kek"))
            .env("TOKEN_AUTHORITY_LIMITS__REFRESH_PER_SESSION", "off")
            .env("TOKEN_AUTHORITY_LIMITS__CALLER_RATE", "off")
            .env("TOKEN_AUTHORITY_PURGE__ENABLED", "false")
            .env("TOKEN_AUTHORITY_DATABASE__SQLITE_SYNCHRONOUS", "full")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        let mut server = Self {
            child,
            channel: Channel::from_shared(format!("http://{addr}"))?.connect_lazy(),
            addr,
            log,
        };
        server.wait_until_serving().await?;
        Ok(server)
    }

    async fn wait_until_serving(&mut self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "server at {} exited with {status}: {}",
                    self.addr,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
                .into());
            }
            let serving = HealthClient::new(self.channel.clone())
                .check(HealthCheckRequest::default())
                .await
                .is_ok();
            if serving {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("server at {} not serving after 60 s", self.addr).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (by pid), then SIGKILL if it has not exited within 10 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Fields of /proc/PID/stat after the command name, so that index 0 is
/// field 3 (`state`) of proc(5).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
            .collect(),
    )
}

// proc(5) field numbers, minus 4 (the state field is skipped above).
const PPID: usize = 0;
const UTIME: usize = 10;
const STIME: usize = 11;
const CUTIME: usize = 12;
const CSTIME: usize = 13;

/// utime + stime of one process, in ticks.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(&pid.to_string())?;
    Some(f.get(UTIME)? + f.get(STIME)?)
}

/// The driver's own CPU time, in ticks.
pub fn self_ticks() -> Option<u64> {
    let f = stat_fields("self")?;
    Some(f.get(UTIME)? + f.get(STIME)?)
}

/// CPU time of a PostgreSQL cluster: the postmaster, its live children
/// (backends, WAL writer, checkpointer, …) and, through the postmaster's
/// cutime/cstime, every child that has exited and been reaped.
pub fn cluster_ticks(postmaster: u32) -> Option<u64> {
    let own = stat_fields(&postmaster.to_string())?;
    let mut total = own.get(UTIME)? + own.get(STIME)? + own.get(CUTIME)? + own.get(CSTIME)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some(f) = stat_fields(pid) {
            if f.get(PPID) == Some(&(postmaster as u64)) {
                total += f.get(UTIME).unwrap_or(&0) + f.get(STIME).unwrap_or(&0);
            }
        }
    }
    Some(total)
}

/// What is measured around one workload.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub servers: Vec<u32>,
    pub postmaster: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    servers: Option<u64>,
    postgres: Option<u64>,
    driver: Option<u64>,
}

/// CPU µs per request between two snapshots.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuPerOp {
    /// Our server process(es), all replicas together.
    pub server_us: Option<f64>,
    /// Every process of the PostgreSQL cluster.
    pub postgres_us: Option<f64>,
    /// The load driver (this process).
    pub driver_us: Option<f64>,
}

impl Probe {
    pub fn snapshot(&self) -> CpuSnapshot {
        let servers = if self.servers.is_empty() {
            None
        } else {
            self.servers
                .iter()
                .map(|pid| process_ticks(*pid))
                .sum::<Option<u64>>()
        };
        CpuSnapshot {
            servers,
            postgres: self.postmaster.and_then(cluster_ticks),
            driver: self_ticks(),
        }
    }
}

impl CpuSnapshot {
    pub fn per_op(&self, after: &CpuSnapshot, requests: u64, ticks_per_second: u64) -> CpuPerOp {
        let per = |a: Option<u64>, b: Option<u64>| -> Option<f64> {
            let (a, b) = (a?, b?);
            (requests > 0).then(|| {
                b.saturating_sub(a) as f64 * 1e6 / ticks_per_second as f64 / requests as f64
            })
        };
        CpuPerOp {
            server_us: per(self.servers, after.servers),
            postgres_us: per(self.postgres, after.postgres),
            driver_us: per(self.driver, after.driver),
        }
    }
}
