//! Bounds on the gRPC listener's connections: how long a new connection may
//! take to start speaking HTTP/2, how many may be open, how dead peers are
//! detected, and how long shutdown waits for requests in flight.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// A connection that has not sent the 24-byte HTTP/2 client preface by
    /// then is closed. With TLS this covers the first bytes of the TLS
    /// handshake; `tls.handshake_timeout` bounds the rest of it.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Open gRPC connections at most (default: the process's file-descriptor
    /// limit less 64, for the database pool, files and the HTTP listener).
    /// At the limit a new connection closes the oldest one still in its
    /// handshake; if none is, accepting waits until a connection closes.
    pub max_connections: Option<usize>,
    /// Idle time before TCP keepalive probes start.
    #[serde(with = "humantime_serde")]
    pub tcp_keepalive: Duration,
    /// HTTP/2 PING interval on each connection; a peer that does not answer
    /// within `http2_keepalive_timeout` is dropped.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Duration,
    /// At shutdown, requests still running this long after the signal are
    /// cut and their connections closed.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_connections: None,
            tcp_keepalive: Duration::from_secs(60),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ConnectionsConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("connections.handshake_timeout", self.handshake_timeout),
            ("connections.tcp_keepalive", self.tcp_keepalive),
            (
                "connections.http2_keepalive_interval",
                self.http2_keepalive_interval,
            ),
            (
                "connections.http2_keepalive_timeout",
                self.http2_keepalive_timeout,
            ),
            ("connections.shutdown_grace", self.shutdown_grace),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(ConfigError(format!("{name} must be greater than zero")));
            }
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError(
                "connections.max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
