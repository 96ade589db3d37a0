//! Real `token-authority` processes and a private PostgreSQL server, for
//! replica, outage and crash tests.
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::{issue_request, refresh_with, Client};
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::TokenPair;

/// The key-encryption key every test replica uses (replicas sharing a
/// database must share it). Base64 of 32 bytes; never a production key.
pub const TEST_KEK: &str = "dGVzdC1vbmx5LWtlay0wMTIzNDU2Nzg5YWJjZGVmZ2g=";

/// A `token-authority serve` child process; SIGKILLed when dropped.
pub struct Replica {
    child: Child,
    pub addr: SocketAddr,
    pub client: Client,
    database_url: String,
    env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft and hard) the process runs under, if lowered.
    nofile: Option<u64>,
    log: PathBuf,
    _dir: TempDir,
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Replica {
    /// Starts a replica on `database_url`; `env` adds TOKEN_AUTHORITY_* settings.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_at(addr, database_url.to_owned(), env, None).await
    }

    /// Like `start`, under `prlimit --nofile=N:N` (util-linux).
    pub async fn start_with_fd_limit(
        database_url: &str,
        env: &[(&str, &str)],
        nofile: u64,
    ) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_at(addr, database_url.to_owned(), env, Some(nofile)).await
    }

    async fn start_at(
        addr: SocketAddr,
        database_url: String,
        env: Vec<(String, String)>,
        nofile: Option<u64>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = crate::logs::child_log_path("replica", &dir.path().join("replica.log"));
        let binary = env!("CARGO_BIN_EXE_token-authority");
        // prlimit execs the binary: the child's pid is the server's.
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--database-url",
                &database_url,
            ])
            .current_dir(dir.path())
            .env("TOKEN_AUTHORITY_LOG__FILTER", crate::logs::FILTER)
            .env("TOKEN_AUTHORITY_KEK", TEST_KEK)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn token-authority");
        let channel = wait_until_serving(&mut child, addr, &log).await;
        Self {
            child,
            addr,
            client: TokenAuthorityClient::new(channel),
            database_url,
            env,
            nofile,
            log,
            _dir: dir,
        }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no draining.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("reaped");
    }

    /// Starts a new process on the same address, database and settings.
    pub async fn restart(mut self) -> Self {
        self.kill9().await;
        let (addr, url, env) = (self.addr, self.database_url.clone(), self.env.clone());
        Self::start_at(addr, url, env, self.nofile).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn wait_until_serving(child: &mut Child, addr: SocketAddr, log: &Path) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            panic!(
                "replica at {addr} exited with {exit}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .await
        {
            let serving = HealthClient::new(channel.clone())
                .check(HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status == 1);
            if serving {
                return channel;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica at {addr} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PostgreSQL server of this test's own, which the test may stop and start.
pub struct PgServer {
    dir: TempDir,
    pub port: u16,
    bin: PathBuf,
}

impl PgServer {
    pub fn start() -> Self {
        let bin = std::env::var_os("TA_TEST_POSTGRES_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        if running_as_root() {
            run(StdCommand::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path()));
        }
        run(as_postgres(&bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "-E", "UTF8", "-D"])
            .arg(&data));
        let server = Self {
            dir,
            port: free_port(),
            bin,
        };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m fast`: open connections are terminated.
    pub fn stop(&self) {
        run(as_postgres(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.dir.path().join("data")));
    }

    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(as_postgres(&self.bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "30", "-o", &options, "-l"])
            .arg(self.dir.path().join("server.log"))
            .arg("-D")
            .arg(self.dir.path().join("data")));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn running_as_root() -> bool {
    StdCommand::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// PostgreSQL refuses to run as root: use the postgres user when we are root.
pub fn as_postgres(program: &Path) -> StdCommand {
    if running_as_root() {
        let mut c = StdCommand::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        StdCommand::new(program)
    }
}

pub fn run(command: &mut StdCommand) {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What one client of `refresh_load_until_killed` ended with.
pub struct RefreshingClient {
    /// The last pair the server answered with.
    pub last: TokenPair,
    /// How many refreshes it got answers to.
    pub rotations: u32,
}

/// Issues `sessions` sessions on `replica`, then has one client per session
/// refresh back-to-back, always with the last token it received, and
/// SIGKILLs the replica under that load. Returns what each client holds.
pub async fn refresh_load_until_killed(
    replica: &mut Replica,
    sessions: usize,
) -> Vec<RefreshingClient> {
    let mut pairs = Vec::new();
    for i in 0..sessions {
        let pair = replica
            .client()
            .issue(issue_request("acme", &format!("user-{i}")))
            .await
            .unwrap_or_else(|e| panic!("issue: {e:?}\n{}", replica.log()))
            .into_inner()
            .tokens
            .unwrap();
        pairs.push(pair);
    }
    // Bounded even if the kill does not stop them.
    let stop_at = Instant::now() + Duration::from_secs(10);
    let clients = pairs.into_iter().map(|pair| {
        let mut client = replica.client();
        async move {
            let mut last = pair;
            let mut rotations = 0u32;
            while Instant::now() < stop_at {
                match refresh_with(&mut client, &last.refresh_token).await {
                    Ok(next) => {
                        last = next;
                        rotations += 1;
                    }
                    Err(_) => break,
                }
            }
            RefreshingClient { last, rotations }
        }
    });
    let load = tokio::spawn(futures::future::join_all(clients));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replica.kill9().await;
    let results = load.await.expect("load task");
    assert!(
        results.iter().all(|c| c.rotations > 0),
        "load was not running: {}",
        replica.log()
    );
    results
}

/// One row of the sessions table, read directly.
#[derive(Debug)]
pub struct SessionRow {
    pub subject: String,
    pub generation: i64,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
}

/// Every session in the database at `url` (PostgreSQL or SQLite).
pub async fn session_rows(url: &str) -> Vec<SessionRow> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(url)
        .await
        .expect("connect to the test database");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT subject, generation, revoked_at, revoke_reason FROM sessions ORDER BY subject",
        ))
        .await
        .expect("read sessions");
    db.close().await.ok();
    rows.iter()
        .map(|r| SessionRow {
            subject: r.try_get("", "subject").unwrap(),
            generation: r.try_get("", "generation").unwrap(),
            revoked_at: r.try_get("", "revoked_at").unwrap(),
            revoke_reason: r.try_get("", "revoke_reason").unwrap(),
        })
        .collect()
}
