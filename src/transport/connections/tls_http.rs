//! The HTTP listener over TLS (`http.tls`): connections bounded like the
//! plain listener's, each TLS handshake run in a task of its own with the
//! handshake timeout, so that a slow client delays nobody else's accept.
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use super::{Incoming, TrackedStream, HTTP_MAX_CONNECTIONS};
use crate::config::connections::ConnectionsConfig;

pub struct TlsHttpListener {
    incoming: Incoming,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    handshakes: JoinSet<Option<(TlsStream<TrackedStream>, Option<SocketAddr>)>>,
    local: SocketAddr,
}

impl TlsHttpListener {
    pub fn new(
        listener: TcpListener,
        config: &ConnectionsConfig,
        tls: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let mut incoming = Incoming::new(listener, config, "HTTPS");
        incoming.max = HTTP_MAX_CONNECTIONS.min(incoming.max);
        Ok(Self {
            incoming,
            acceptor: TlsAcceptor::from(tls),
            handshake_timeout,
            handshakes: JoinSet::new(),
            local,
        })
    }
}

impl axum::serve::Listener for TlsHttpListener {
    type Io = TlsStream<TrackedStream>;
    type Addr = Option<SocketAddr>;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                // The stream never ends and never fails: it backs off itself.
                Some(Ok(io)) = self.incoming.next() => {
                    let peer = io.connect_info().remote_addr();
                    let handshake = self.acceptor.accept(io);
                    let timeout = self.handshake_timeout;
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(timeout, handshake).await {
                            Ok(Ok(tls)) => Some((tls, peer)),
                            // A failed or slow handshake is the client's
                            // problem; the connection is dropped.
                            _ => None,
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(accepted)) = done {
                        return accepted;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Some(self.local))
    }
}
