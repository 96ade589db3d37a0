//! `/metrics` scraped by a real Prometheus server (Debian's package,
//! installed by scripts/install-test-tools.sh), queried through its HTTP
//! API: RPC counts, refresh and validate outcomes by reason.
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tonic::Code;

use crate::common::*;
use crate::on_both_backends;

const PROMETHEUS_VAR: &str = "TA_TEST_PROMETHEUS";
const PROMETHEUS: &str = "/usr/bin/prometheus";

on_both_backends!(prometheus_scrapes_rpc_and_outcome_metrics);

async fn prometheus_scrapes_rpc_and_outcome_metrics(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.issue("acme", "alice").await;
    let second = server.refresh(&first.refresh_token).await.unwrap();
    assert!(server.validate(&second.access_token).await.is_ok());
    // Once its successor was used, the first token is a replay.
    server.refresh(&second.refresh_token).await.unwrap();
    assert_error(
        server.refresh(&first.refresh_token).await,
        Code::Unauthenticated,
        "TOKEN_REUSED",
    );
    assert!(server.validate("not-a-token").await.is_err());

    // Our own text first: the names Prometheus will see.
    let text = http_get(server.http_addr, "/metrics", &[]).await;
    assert_eq!(text.status, 200);
    assert!(
        text.body
            .contains("token_authority_refresh_outcomes_total{reason=\"TOKEN_REUSED\"} 1"),
        "{}",
        text.body
    );

    let prometheus = Prometheus::start(server.http_addr).await;
    let reused = prometheus
        .query_until_present("token_authority_refresh_outcomes_total{reason=\"TOKEN_REUSED\"}")
        .await;
    println!("Prometheus answered: {reused}");
    assert_eq!(only_value(&reused), 1.0, "{reused}");
    let reuse = prometheus
        .query_until_present("token_authority_refresh_reuse_detected_total")
        .await;
    assert_eq!(only_value(&reuse), 1.0, "{reuse}");
    let refreshed = prometheus
        .query_until_present("token_authority_refresh_outcomes_total{reason=\"OK\"}")
        .await;
    assert_eq!(only_value(&refreshed), 2.0, "{refreshed}");
    let issued = prometheus
        .query_until_present(
            "sum(token_authority_rpc_requests_total{rpc_method=\"Issue\",rpc_grpc_status_code=\"0\"})",
        )
        .await;
    assert!(only_value(&issued) >= 1.0, "{issued}");
    let garbage = prometheus
        .query_until_present("token_authority_validate_outcomes_total{reason!=\"OK\"}")
        .await;
    assert_eq!(only_value(&garbage), 1.0, "{garbage}");
    let durations = prometheus
        .query_until_present("rpc_server_duration_milliseconds_count{rpc_method=\"Refresh\"}")
        .await;
    assert!(sum_values(&durations) >= 3.0, "{durations}");
    let pool = prometheus
        .query_until_present("token_authority_db_pool_connections")
        .await;
    assert!(!results(&pool).is_empty(), "{pool}");
    prometheus.stop().await;
}

struct Prometheus {
    child: tokio::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// `/usr/bin/prometheus` scraping `target` every second, on a free
    /// loopback port, its data in a temporary directory.
    async fn start(target: SocketAddr) -> Self {
        let binary = std::env::var(PROMETHEUS_VAR).unwrap_or_else(|_| PROMETHEUS.to_owned());
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} not found: run scripts/install-test-tools.sh (Debian package prometheus), or set {PROMETHEUS_VAR}"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: token-authority\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = tokio::process::Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The answer of `/api/v1/query` once it has a result (up to 30 s:
    /// Prometheus starting, then one or two scrapes).
    async fn query_until_present(&self, query: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        loop {
            if let Ok(stream) = tokio::net::TcpStream::connect(self.addr).await {
                drop(stream);
                let response = http_get(self.addr, &path, &[]).await;
                if response.status == 200 {
                    let body: serde_json::Value = response.json();
                    if !results(&body).is_empty() {
                        return body;
                    }
                }
                last = response.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no result for {query}; last answer {last}; Prometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL by the child's pid, then reap it.
    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

fn results(answer: &serde_json::Value) -> Vec<serde_json::Value> {
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sum_values(answer: &serde_json::Value) -> f64 {
    results(answer)
        .iter()
        .map(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn only_value(answer: &serde_json::Value) -> f64 {
    assert_eq!(results(answer).len(), 1, "{answer}");
    sum_values(answer)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
