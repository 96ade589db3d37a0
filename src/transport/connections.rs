//! The gRPC listener's incoming connections, bounded: TCP_NODELAY and
//! keepalive on each, a handshake timeout, a connection limit that evicts
//! the oldest connection still in its handshake, and accept errors that
//! back off instead of spinning (EMFILE).
mod tls_http;
mod tracked;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

pub use tls_http::TlsHttpListener;
pub use tracked::{Registry, TrackedStream};

use crate::config::connections::ConnectionsConfig;

/// File descriptors left for the database pool and its LISTEN connection,
/// files, the runtime, and the HTTP listener's connections, when the gRPC
/// connection limit is derived from RLIMIT_NOFILE.
const RESERVED_FDS: u64 = 128;
/// The HTTP listener's own limit: health checks and key-set fetches.
const HTTP_MAX_CONNECTIONS: usize = 64;
/// The limit when the file-descriptor limit is unknown or unlimited.
const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The connection limit: configured, or derived from RLIMIT_NOFILE.
pub fn max_connections(config: &ConnectionsConfig) -> usize {
    config
        .max_connections
        .unwrap_or_else(|| from_fd_limit(fd_limit()))
}

fn from_fd_limit(limit: Option<u64>) -> usize {
    match limit {
        Some(n) => usize::try_from(n.saturating_sub(RESERVED_FDS).max(n / 2).max(1))
            .unwrap_or(FALLBACK_MAX_CONNECTIONS),
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

#[cfg(unix)]
fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn fd_limit() -> Option<u64> {
    None
}

/// Out of file descriptors or socket memory: retrying at once fails again.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        matches!(
            Errno::from_io_error(error),
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        error.kind() == io::ErrorKind::OutOfMemory
    }
}

/// A failure of one would-be connection, not of the listener.
fn is_per_connection(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | PermissionDenied
    )
}

/// The stream of connections `serve_with_incoming_shutdown` serves (and,
/// through `HttpListener`, what axum serves).
pub struct Incoming {
    listener: TcpListener,
    /// What is served, for logs: "gRPC" or "HTTP".
    protocol: &'static str,
    registry: Arc<Registry>,
    max: usize,
    handshake_timeout: Duration,
    keepalive: TcpKeepalive,
    /// Not accepting until it fires.
    backoff: Option<Pin<Box<Sleep>>>,
    next_backoff: Duration,
    /// Not accepting until more connections than this have closed.
    wait_for_close: Option<u64>,
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl Incoming {
    pub fn new(listener: TcpListener, config: &ConnectionsConfig, protocol: &'static str) -> Self {
        Self {
            listener,
            protocol,
            registry: Arc::default(),
            max: max_connections(config),
            handshake_timeout: config.handshake_timeout,
            keepalive: TcpKeepalive::new().with_time(config.tcp_keepalive),
            backoff: None,
            next_backoff: MIN_BACKOFF,
            wait_for_close: None,
            last_warning: None,
            suppressed: 0,
        }
    }

    /// The open connections, to close them at the end of a shutdown.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn configure(&self, stream: &TcpStream) {
        // TCP_NODELAY: without it, small unary responses wait for the
        // client's delayed ACK (~40 ms on Linux).
        let socket = SockRef::from(stream);
        if let Err(e) = socket
            .set_tcp_nodelay(true)
            .and_then(|()| socket.set_tcp_keepalive(&self.keepalive))
        {
            tracing::debug!(error = %e, "setting socket options");
        }
    }

    fn back_off(&mut self) {
        self.backoff = Some(Box::pin(tokio::time::sleep(self.next_backoff)));
        self.next_backoff = (self.next_backoff * 2).min(MAX_BACKOFF);
    }

    fn warn(&mut self, error: &io::Error, evicted: bool) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            error = %error,
            open_connections = self.registry.live(),
            max_connections = self.max,
            evicted_idle_connection = evicted,
            suppressed_since_last_warning = self.suppressed,
            "cannot accept {} connections; backing off",
            self.protocol
        );
        self.last_warning = Some(now);
        self.suppressed = 0;
    }

    /// Whether accepting must wait (a timer or a close is awaited).
    fn waiting(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(backoff) = &mut self.backoff {
            if backoff.as_mut().poll(cx).is_pending() {
                return true;
            }
            self.backoff = None;
        }
        if let Some(seen) = self.wait_for_close {
            // Registered before looking, so a close in between is not missed.
            self.registry.register_acceptor(cx.waker());
            if self.registry.closed() == seen {
                return true;
            }
            self.wait_for_close = None;
        }
        false
    }
}

impl Stream for Incoming {
    type Item = Result<TrackedStream, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.waiting(cx) {
                return Poll::Pending;
            }
            if let Some(closed) = this.registry.full_of_established(this.max) {
                // Leave new connections in the kernel's backlog until one closes.
                this.wait_for_close = Some(closed);
                continue;
            }
            let error = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => {
                    this.next_backoff = MIN_BACKOFF;
                    if this.registry.live() >= this.max {
                        this.registry.evict_oldest_pending();
                    }
                    this.configure(&stream);
                    let tracked = this.registry.track(stream, this.handshake_timeout);
                    return Poll::Ready(Some(Ok(tracked)));
                }
                Poll::Ready(Err(e)) => e,
            };
            if is_per_connection(&error) {
                tracing::debug!(%error, "accepting a connection failed");
                continue;
            }
            let closed = this.registry.closed();
            let evicted = is_resource_exhaustion(&error) && this.registry.evict_oldest_pending();
            this.warn(&error, evicted);
            if evicted {
                // Its descriptor is free once it has closed.
                this.wait_for_close = Some(closed);
            } else {
                this.back_off();
            }
        }
    }
}

/// `Incoming` as an axum listener, so the HTTP listener's connections are
/// bounded the same way (an HTTP/1 request line is longer than the 24
/// bytes the handshake timeout waits for).
pub struct HttpListener {
    incoming: Incoming,
    local: std::net::SocketAddr,
}

impl HttpListener {
    pub fn new(listener: TcpListener, config: &ConnectionsConfig) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let mut incoming = Incoming::new(listener, config, "HTTP");
        incoming.max = HTTP_MAX_CONNECTIONS.min(incoming.max);
        Ok(Self { incoming, local })
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TrackedStream;
    type Addr = Option<std::net::SocketAddr>;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures_util::StreamExt;
        use tonic::transport::server::Connected;
        loop {
            // The stream never ends and never fails: it backs off itself.
            if let Some(Ok(io)) = self.incoming.next().await {
                let peer = io.connect_info().remote_addr();
                return (io, peer);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Some(self.local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_from_fd_limit_leaves_a_reserve() {
        assert_eq!(from_fd_limit(Some(1024)), 896);
        assert_eq!(from_fd_limit(Some(256)), 128);
        assert_eq!(from_fd_limit(Some(100)), 50);
        assert_eq!(from_fd_limit(Some(1)), 1);
        assert_eq!(from_fd_limit(None), FALLBACK_MAX_CONNECTIONS);
    }
}
