//! Bounds on connections (gRPC, and the HTTP listener): the handshake
//! timeout, the connection limit, an idle flood beyond the file-descriptor
//! limit, the shutdown grace.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::*;
use crate::processes::Replica;
use token_authority::proto::token_authority_client::TokenAuthorityClient;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what a client sends right after the preface.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads (and discards) until the server closes the connection; how long
/// that took from `since`. Panics if it is still open after `bound`.
async fn closed_after(mut stream: TcpStream, since: Instant, bound: Duration) -> Duration {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("connection still open after {bound:?}"))
}

/// Whether the server keeps the connection open for `wait`.
async fn stays_open(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let reading = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, reading).await.is_err()
}

async fn new_client(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("client connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_preface_connections_are_closed_after_the_handshake_timeout() {
    let timeout = Duration::from_secs(1);
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.connections.handshake_timeout = timeout;
    })
    .await;
    let opened = Instant::now();
    let silent = connect(server.addr).await;
    let mut half = connect(server.addr).await;
    half.write_all(&PREFACE[..12]).await.expect("write");
    let mut complete = connect(server.addr).await;
    complete.write_all(PREFACE).await.expect("write");
    complete.write_all(&EMPTY_SETTINGS).await.expect("write");

    // Meanwhile, a real client is served.
    server.issue("acme", "alice").await;

    let bound = Duration::from_secs(5);
    let (silent_closed, half_closed) = tokio::join!(
        closed_after(silent, opened, bound),
        closed_after(half, opened, bound)
    );
    for closed in [silent_closed, half_closed] {
        assert!(closed >= timeout - Duration::from_millis(100), "{closed:?}");
        assert!(closed < timeout + Duration::from_secs(2), "{closed:?}");
    }
    assert!(
        stays_open(&mut complete, timeout).await,
        "a connection that sent its preface is not subject to the handshake timeout"
    );
    server.issue("acme", "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_a_new_connection_evicts_the_oldest_idle_one() {
    // The server's own test client holds one established connection.
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.connections.max_connections = Some(4);
        c.connections.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect(server.addr).await);
        // Accepted in this order.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let mut client = TokenAuthorityClient::new(new_client(server.addr).await);
    issue_with(&mut client, "acme", "alice").await;
    let latency = started.elapsed();
    assert!(latency < Duration::from_secs(2), "{latency:?}");

    let mut idle = idle.into_iter();
    let oldest = idle.next().expect("three idle connections");
    closed_after(oldest, started, Duration::from_secs(2)).await;
    for mut younger in idle {
        assert!(stays_open(&mut younger, Duration::from_millis(300)).await);
    }
    // Everyone is established or idle-but-young: the old client still works.
    server.issue("acme", "bob").await;
}

/// HEADERS of a unary Issue call on stream 1 whose body never comes.
fn headers_without_body(addr: SocketAddr) -> Vec<u8> {
    fn literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        // Literal header field without indexing, new name (RFC 7541 6.2.2).
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value);
    }
    // :method POST, :scheme http (static table entries 3 and 6).
    let mut block = vec![0x83, 0x86];
    literal(
        &mut block,
        b":path",
        b"/token_authority.v1.TokenAuthority/Issue",
    );
    literal(&mut block, b":authority", addr.to_string().as_bytes());
    literal(&mut block, b"content-type", b"application/grpc");
    literal(&mut block, b"te", b"trailers");
    let len = block.len() as u32;
    // Type HEADERS, flags END_HEADERS (no END_STREAM), stream 1.
    let mut frame = vec![
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        1,
        4,
        0,
        0,
        0,
        1,
    ];
    frame.extend_from_slice(&block);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_requests_still_running_after_the_grace_period() {
    let grace = Duration::from_secs(1);
    let mut server = TestServer::start_with(Backend::Sqlite, |c| {
        c.connections.shutdown_grace = grace;
        c.request_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stuck = connect(server.addr).await;
    stuck.write_all(PREFACE).await.expect("write");
    stuck.write_all(&EMPTY_SETTINGS).await.expect("write");
    stuck
        .write_all(&headers_without_body(server.addr))
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops within the grace period and a bit");
    let took = stopping.elapsed();
    assert!(took >= grace - Duration::from_millis(100), "{took:?}");
    assert!(took < grace + Duration::from_secs(3), "{took:?}");
    closed_after(stuck, stopping, Duration::from_secs(2)).await;
}

/// utime + stime of a process, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, 12th and 13th after it.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).expect("stat");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Floods a replica running with 256 file descriptors with 400 idle
/// connections, then asserts a new client is served quickly, the idle
/// server stays idle, and how many accept-error warnings it logged.
async fn idle_flood_beyond_the_fd_limit(env: &[(&str, &str)], accept_warnings: usize) {
    const NOFILE: u64 = 256;
    const FLOOD: usize = 400;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/authority.db", dir.path().display());
    let replica = Replica::start_with_fd_limit(&url, env, NOFILE).await;
    let pid = replica.pid().expect("replica runs");

    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        // The kernel's backlog completes connections the server has not
        // accepted, so these succeed even when it cannot accept.
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(replica.addr)).await {
            Ok(Ok(stream)) => flood.push(stream),
            _ => break,
        }
    }
    assert!(flood.len() > NOFILE as usize, "{} connections", flood.len());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(10), async {
        let channel = new_client(replica.addr).await;
        issue_with(
            &mut TokenAuthorityClient::new(channel.clone()),
            "acme",
            "alice",
        )
        .await;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .expect("health check")
            .into_inner()
            .status
    })
    .await;
    let latency = started.elapsed();
    assert_eq!(
        served.ok(),
        Some(1),
        "not served within 10 s: {}",
        replica.log()
    );

    let idle_from = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = cpu_time(pid).saturating_sub(idle_from);
    eprintln!(
        "idle flood of {} connections, nofile {NOFILE}: new client served in {latency:?}, server CPU over 3 s idle: {cpu:?}",
        flood.len()
    );
    assert!(latency < Duration::from_secs(3), "{latency:?}");
    assert!(cpu < Duration::from_millis(200), "{cpu:?}");
    // At most one per 10 s, however many errors.
    let log = replica.log();
    assert_eq!(
        log.matches("cannot accept gRPC connections").count(),
        accept_warnings,
        "{log}"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_beyond_the_fd_limit_does_not_lock_clients_out() {
    idle_flood_beyond_the_fd_limit(&[], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_into_accept_errors_does_not_lock_clients_out_or_spin() {
    // A limit above the descriptor limit: accepting fails with EMFILE.
    idle_flood_beyond_the_fd_limit(
        &[("TOKEN_AUTHORITY_CONNECTIONS__MAX_CONNECTIONS", "10000")],
        1,
    )
    .await;
}

/// The HTTP listener (JWKS, discovery, health) is bounded the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_closes_silent_connections_too() {
    let timeout = Duration::from_secs(1);
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.connections.handshake_timeout = timeout;
    })
    .await;
    let opened = Instant::now();
    let silent = connect(server.http_addr).await;
    let closed = closed_after(silent, opened, Duration::from_secs(5)).await;
    assert!(closed >= timeout - Duration::from_millis(100), "{closed:?}");
    // A real request is served, on a connection that stays usable.
    let mut client = connect(server.http_addr).await;
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    client
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
