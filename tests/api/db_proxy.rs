//! A TCP fault proxy between the service and its database, for outage tests
//! that a stopped server cannot reproduce: refused connections, a balancer
//! that accepts and hangs up, and a network that silently stops delivering.
//!
//! Loopback only; every task is aborted when the proxy is dropped.
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does with connections, switchable at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards bytes both ways.
    Forward,
    /// Not listening: connects get ECONNREFUSED. Open connections are closed.
    Refuse,
    /// Accepts, then closes at once without a byte (a balancer without a
    /// healthy backend). Open connections are closed.
    AcceptThenClose,
    /// Every connection, open or new, stays open but no byte moves either
    /// way; forwarding resumes, nothing lost, on `Forward`.
    Stall,
}

impl Mode {
    fn closes_connections(self) -> bool {
        matches!(self, Mode::Refuse | Mode::AcceptThenClose)
    }
}

/// Bounds how long the proxy waits for anything it does itself.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct DbProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// The mode the accept loop has put into effect (listener bound or not).
    applied: watch::Receiver<Mode>,
    task: JoinHandle<()>,
}

impl DbProxy {
    /// Starts forwarding from an ephemeral loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        assert!(upstream.ip().is_loopback(), "loopback only: {upstream}");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let (applied_tx, applied) = watch::channel(Mode::Forward);
        let task = tokio::spawn(accept_loop(listener, addr, upstream, mode_rx, applied_tx));
        Self {
            addr,
            mode,
            applied,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `database_url` (postgres://user@host:port/db?...) with host and port
    /// replaced by the proxy's.
    pub fn url_for(&self, database_url: &str) -> String {
        let (scheme, rest) = database_url.split_once("://").expect("URL has a scheme");
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}{tail}", self.addr)
    }

    /// Switches mode; returns once the listener is in the new state (open
    /// connections follow within milliseconds).
    pub async fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        let mut applied = self.applied.clone();
        tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|m| *m == mode))
            .await
            .unwrap_or_else(|_| panic!("proxy did not switch to {mode:?}"))
            .expect("proxy task alive");
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        // The accept loop owns the JoinSet of connections: aborting it drops
        // (and so aborts) them too.
        self.task.abort();
    }
}

/// The `host:port` of a postgres URL, resolved to a socket address.
pub fn upstream_of(database_url: &str) -> SocketAddr {
    let rest = database_url.split_once("://").expect("URL has a scheme").1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("{host_port} is not ip:port: {e}"))
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    applied: watch::Sender<Mode>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Refuse {
            // Closing the listening socket: the kernel answers RST to SYNs.
            listener = None;
        } else if listener.is_none() {
            listener = Some(rebind(addr).await);
        }
        applied.send_replace(current);
        match &listener {
            None => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    match current {
                        Mode::AcceptThenClose | Mode::Refuse => drop(client),
                        Mode::Forward | Mode::Stall => {
                            connections.spawn(connection(client, upstream, mode.clone()));
                        }
                    }
                }
                changed = mode.changed() => if changed.is_err() { return },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            },
        }
    }
}

/// Binds `addr` again after a Refuse period (bounded retries).
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("proxy could not listen on {addr} again");
}

async fn connection(client: TcpStream, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    let Ok(Ok(server)) =
        tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending (EOF, error, a closing mode) ends both.
    tokio::select! {
        _ = pump(client_read, server_write, mode.clone()) => {}
        _ = pump(server_read, client_write, mode) => {}
    }
}

/// Waits until bytes may move: true on Forward, false when the connection
/// must close.
async fn forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Forward => return true,
            m if m.closes_connections() => return false,
            _ => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

/// Copies `from` to `to` while the mode is Forward. Bytes not yet read stay
/// in the kernel's buffers during a stall; a chunk read but not yet written
/// is kept and written on resume.
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !forwarding(&mut mode).await {
            return;
        }
        let n = tokio::select! {
            ready = from.readable() => {
                if ready.is_err() {
                    return;
                }
                match from.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                }
            }
            _ = mode.changed() => continue,
        };
        let mut sent = 0;
        while sent < n {
            if !forwarding(&mut mode).await {
                return;
            }
            tokio::select! {
                ready = to.writable() => {
                    if ready.is_err() {
                        return;
                    }
                    match to.try_write(&buf[sent..n]) {
                        Ok(k) => sent += k,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                _ = mode.changed() => {}
            }
        }
    }
}

#[tokio::test]
async fn the_proxy_forwards_refuses_hangs_up_and_stalls_on_demand() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An echo server upstream.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    let echo_task = tokio::spawn(async move {
        loop {
            let (mut socket, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = DbProxy::start(upstream).await;
    assert_eq!(
        proxy.url_for("postgres://postgres@127.0.0.1:5432/db?sslmode=disable"),
        format!("postgres://postgres@{}/db?sslmode=disable", proxy.addr())
    );
    assert_eq!(
        upstream_of("postgres://u@127.0.0.1:5432/db"),
        "127.0.0.1:5432".parse().unwrap()
    );
    let short = Duration::from_millis(300);
    let bound = Duration::from_secs(5);

    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    a.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    tokio::time::timeout(bound, a.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"ping");

    // Stall: nothing comes back, from an open or a new connection...
    proxy.set(Mode::Stall).await;
    a.write_all(b"one").await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    b.write_all(b"two").await.unwrap();
    let mut got = [0u8; 3];
    assert!(tokio::time::timeout(short, a.read_exact(&mut got))
        .await
        .is_err());
    assert!(tokio::time::timeout(short, b.read_exact(&mut got))
        .await
        .is_err());
    // ...until it heals, and then nothing was lost.
    proxy.set(Mode::Forward).await;
    tokio::time::timeout(bound, a.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"one");
    tokio::time::timeout(bound, b.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"two");

    // AcceptThenClose: open connections end, new ones end without a byte.
    proxy.set(Mode::AcceptThenClose).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(bound, a.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let read = tokio::time::timeout(bound, c.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");

    // Refuse: connects are refused.
    proxy.set(Mode::Refuse).await;
    let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused:?}");

    proxy.set(Mode::Forward).await;
    let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
    d.write_all(b"back").await.unwrap();
    let mut got = [0u8; 4];
    tokio::time::timeout(bound, d.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"back");

    // Dropped: it stops listening.
    let addr = proxy.addr();
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err());
    echo_task.abort();
}
