//! Service configuration: defaults, then an optional TOML file, then
//! `TOKEN_AUTHORITY_*` environment variables (nested keys joined with `__`,
//! e.g. `TOKEN_AUTHORITY_DATABASE__URL`). Callers (`[[auth.callers]]`) are
//! configured in the file.
pub mod connections;
mod defaults_toml;
mod load;
pub mod rate;
pub mod tls;

pub use defaults_toml::defaults_toml;
pub use load::{Inspection, Loaded};

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::access::config::AuthConfig;
use crate::verify::keys::KeyAlgorithm;
use connections::ConnectionsConfig;
use rate::Rate;
use tls::TlsConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Deadline for one RPC, database work included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often each replica reads revocations and signing keys written by
    /// other replicas: the bound on how stale Validate can be elsewhere.
    #[serde(with = "humantime_serde")]
    pub state_sync_interval: Duration,
    /// WatchRevocations sends a heartbeat this often when nothing else
    /// happens, so that a sidecar can tell a quiet stream from a dead one.
    #[serde(with = "humantime_serde")]
    pub watch_heartbeat: Duration,
    pub database: DatabaseConfig,
    pub tokens: TokenConfig,
    pub keys: KeysConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    /// Bounds on gRPC connections: handshake timeout, connection limit,
    /// keepalive, shutdown grace.
    pub connections: ConnectionsConfig,
    pub http: HttpConfig,
    pub health: HealthConfig,
    pub sidecar: SidecarConfig,
    pub purge: PurgeConfig,
    pub telemetry: TelemetryConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Algorithm of newly generated signing keys: `EdDSA` or `ES256`.
    pub algorithm: KeyAlgorithm,
    /// A new signing key is generated when the newest one has been signing
    /// this long (`0s`: only by `keys rotate` or the RotateSigningKey RPC).
    #[serde(with = "humantime_serde")]
    pub rotation_interval: Duration,
    /// A new key is published (JWKS, sidecars, other replicas) this long
    /// before it signs. At least `http.jwks_max_age`, so that cached key
    /// sets know a key before any token carries it.
    #[serde(with = "humantime_serde")]
    pub publish_ahead: Duration,
    /// File holding the key-encryption key (base64 of 32 bytes), used when
    /// neither the `TOKEN_AUTHORITY_KEK` environment variable nor
    /// `kek_command` is set. Generated (mode 0600) on a first start with an
    /// empty database.
    pub kek_file: Option<PathBuf>,
    /// Shell command (`/bin/sh -c`) that prints the key-encryption key in
    /// base64 (e.g. from Vault or a cloud KMS); used when
    /// `TOKEN_AUTHORITY_KEK` is not set, instead of `kek_file`. Must finish
    /// within 10 s with status 0.
    pub kek_command: Option<String>,
    /// While the KEK changes: file holding the previous KEK, whose sealed
    /// values still open (`TOKEN_AUTHORITY_PREVIOUS_KEK` wins over it).
    /// See docs/kek-rotation.md.
    pub previous_kek_file: Option<PathBuf>,
    /// The same, printed by a command like `kek_command`.
    pub previous_kek_command: Option<String>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            algorithm: KeyAlgorithm::EdDsa,
            rotation_interval: Duration::from_secs(30 * 24 * 3600),
            publish_ahead: Duration::from_secs(20 * 60),
            kek_file: Some(PathBuf::from("token-authority.kek")),
            kek_command: None,
            previous_kek_file: None,
            previous_kek_command: None,
        }
    }
}

impl KeysConfig {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, command) in [
            ("keys.kek_command", &self.kek_command),
            ("keys.previous_kek_command", &self.previous_kek_command),
        ] {
            if command.as_deref().is_some_and(|c| c.trim().is_empty()) {
                problems.push(format!("{name} must not be empty"));
            }
        }
        if self.previous_kek_file.is_some() && self.previous_kek_command.is_some() {
            problems.push(
                "keys.previous_kek_file and keys.previous_kek_command are exclusive: set one"
                    .to_owned(),
            );
        }
        if self.previous_kek_file.is_some() && self.previous_kek_file == self.kek_file {
            problems.push("keys.previous_kek_file is keys.kek_file".to_owned());
        }
        problems
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Live sessions per (tenant, subject); issuing one more revokes the
    /// least recently used (0: no cap).
    pub max_sessions_per_subject: u32,
    /// Refreshes per session, e.g. `10/min` (`off`: no limit).
    #[serde(with = "rate::optional")]
    pub refresh_per_session: Option<Rate>,
    /// Requests per caller (per peer IP without authentication), unless the
    /// caller has its own `rate` (`off`: no limit).
    #[serde(with = "rate::optional")]
    pub caller_rate: Option<Rate>,
    /// Total size of a request's metadata (headers).
    pub max_metadata_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sessions_per_subject: 50,
            refresh_per_session: Some(Rate {
                count: std::num::NonZeroU32::new(10).unwrap_or(std::num::NonZeroU32::MIN),
                per: Duration::from_secs(60),
            }),
            caller_rate: Some(Rate {
                count: std::num::NonZeroU32::new(5000).unwrap_or(std::num::NonZeroU32::MIN),
                per: Duration::from_secs(1),
            }),
            max_metadata_bytes: 8 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// HTTP listener for the key set, discovery, health, `/metrics`, the
    /// OAuth 2.0 endpoints and forward-auth (absent: none).
    pub listen: Option<SocketAddr>,
    /// Base URL the HTTP listener is reached at, for `jwks_uri` (default:
    /// `http://<listen address>`).
    pub public_url: Option<String>,
    /// `Cache-Control: max-age` of the key set.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// Serve the endpoints that carry tokens and caller keys (`/oauth2/*`,
    /// `/authz`) on a listener that is not on loopback, although it speaks
    /// plain HTTP: only where the network is protected otherwise (a service
    /// mesh's mutual TLS, a pod-local gateway).
    pub plaintext_credentials: bool,
    /// Serve HTTPS with the gRPC port's certificate and key (`[tls]`).
    /// Client certificates signed by `tls.client_ca_file` identify callers
    /// here too; they are asked for, never required (probes have none).
    pub tls: bool,
    /// The request header in which a gateway in front passes the client
    /// certificate of the user's TLS connection (RFC 9440 `:base64(DER):`,
    /// e.g. `client-cert`), for certificate-bound tokens at `/authz` and
    /// `/oauth2/introspect`. Unset: `/authz` refuses bound tokens. Only for
    /// gateways that set (overwrite) it from their own TLS session.
    pub client_certificate_header: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            public_url: None,
            jwks_max_age: Duration::from_secs(5 * 60),
            plaintext_credentials: false,
            tls: false,
            client_certificate_header: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Readiness (`/readyz`, gRPC health `readiness`) turns NOT_SERVING when
    /// the replica's state was last read from the database longer ago than
    /// this: the database is down, stalled or out of connections, so writes
    /// would fail. Longer than `state_sync_interval` plus
    /// `database.statement_timeout`, so that one slow read does not flap it.
    #[serde(with = "humantime_serde")]
    pub max_state_age: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            max_state_age: Duration::from_secs(5),
        }
    }
}

/// `token-authority sidecar`: validates locally with state streamed from an
/// authority.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SidecarConfig {
    /// Where the sidecar serves Validate and Check.
    pub listen: SocketAddr,
    /// The authority, e.g. `https://authority:50051` (plain `http://` only
    /// on loopback, or with `--insecure`).
    pub upstream: Option<String>,
    /// File holding the bearer key the sidecar presents upstream.
    pub upstream_key_file: Option<PathBuf>,
    /// PEM CA of the upstream's certificate (https upstreams).
    pub upstream_ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS upstream.
    pub upstream_cert_file: Option<PathBuf>,
    pub upstream_cert_key_file: Option<PathBuf>,
    /// The name to check the upstream's certificate against (default: its host).
    pub upstream_domain: Option<String>,
    /// How long without word from upstream the sidecar keeps validating
    /// with what it has; after that Validate and Check fail closed.
    #[serde(with = "humantime_serde")]
    pub max_staleness: Duration,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            upstream: None,
            upstream_key_file: None,
            upstream_ca_file: None,
            upstream_cert_file: None,
            upstream_cert_key_file: None,
            upstream_domain: None,
            max_staleness: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PurgeConfig {
    /// Run the purge task inside `serve`.
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Rows per DELETE statement: small enough that no statement holds locks long.
    pub batch_size: u64,
    /// Least pause between batches; the purge also pauses at least as long as
    /// the previous batch took, so it never holds the database more than half
    /// the time.
    #[serde(with = "humantime_serde")]
    pub batch_pause: Duration,
    /// How long revoked sessions are kept (refresh answers SESSION_REVOKED
    /// meanwhile). Never shorter than tokens.access_ttl, so that a restarted
    /// replica can still rebuild its revoked-session set.
    #[serde(with = "humantime_serde")]
    pub revoked_retention: Duration,
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP endpoint, e.g. `http://127.0.0.1:4317` (gRPC) or `:4318` (HTTP).
    /// Unset: the standard OTEL_EXPORTER_OTLP_ENDPOINT; neither: nothing is
    /// exported over OTLP.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Unset: the standard
    /// OTEL_EXPORTER_OTLP_PROTOCOL, else `grpc`.
    pub otlp_protocol: Option<crate::telemetry::OtlpProtocol>,
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            batch_size: 200,
            batch_pause: Duration::from_millis(5),
            revoked_retention: Duration::from_secs(24 * 3600),
            audit_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: None,
            metrics_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path.db` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    /// Pool size. SQLite allows one writer at a time, so its default is 1:
    /// queueing in the pool is cheaper than SQLite's sleep-and-retry on a busy lock.
    pub max_connections: Option<u32>,
    /// How long a query may wait for a pooled connection before the RPC
    /// fails with UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PostgreSQL `statement_timeout`: a statement running longer is
    /// cancelled (the RPC answers UNAVAILABLE) instead of holding locks.
    /// On SQLite, how long a statement waits for the write lock.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// SQLite durability. `full` (default): a commit is on disk before the
    /// client gets its token, even across a power loss. `normal` (WAL): a
    /// commit survives a crash of the process, but the last ones may be lost
    /// on power loss, leaving clients with tokens the database never saw;
    /// several times faster commits.
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// `iss` of every access token; Validate rejects other issuers.
    pub issuer: String,
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// A session ends this long after it started, however active.
    #[serde(with = "humantime_serde")]
    pub session_absolute_ttl: Duration,
    /// A session ends when it is not refreshed for this long.
    #[serde(with = "humantime_serde")]
    pub session_idle_ttl: Duration,
    /// A refresh token presented again after it was rotated, while its
    /// successor has not been used yet, gets that same successor if it
    /// comes back within this long after the rotation committed (by the
    /// database's clock): two tabs refreshing at once, or a client retrying
    /// after a lost response, a stall or a crash of the server. Outside it,
    /// or once the successor was used, it is a replay and revokes the
    /// session. (It replaces `refresh_grace`, measured on each replica's clock.)
    #[serde(with = "humantime_serde")]
    pub refresh_retry_window: Duration,
    /// How far `exp`, `nbf` and `iat` may be off when validating, for
    /// clocks that differ between the machine that minted a token and the
    /// one that checks it. It also extends an expired token's life by as
    /// much.
    #[serde(with = "humantime_serde")]
    pub clock_leeway: Duration,
    /// Record an audit event for every refresh (issue, revoke and reuse are
    /// always recorded).
    pub audit_refreshes: bool,
    /// Validate remembers this many verified access tokens, so a token seen
    /// before costs a hash instead of a signature check (0 disables).
    pub verified_token_cache: usize,
    /// Tenants whose access tokens must be certificate-bound (RFC 8705):
    /// Issue and Refresh without a binding are refused, and Validate
    /// refuses their bearer tokens (see docs/certificate-binding.md).
    pub binding_required_tenants: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,token_authority=debug`. `RUST_LOG` wins.
    pub filter: String,
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            request_timeout: Duration::from_secs(5),
            state_sync_interval: Duration::from_millis(250),
            watch_heartbeat: Duration::from_secs(5),
            database: DatabaseConfig::default(),
            tokens: TokenConfig::default(),
            keys: KeysConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            connections: ConnectionsConfig::default(),
            http: HttpConfig::default(),
            health: HealthConfig::default(),
            sidecar: SidecarConfig::default(),
            purge: PurgeConfig::default(),
            telemetry: TelemetryConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://token-authority.db".into(),
            max_connections: None,
            acquire_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(2),
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "token-authority".into(),
            access_ttl: Duration::from_secs(15 * 60),
            session_absolute_ttl: Duration::from_secs(30 * 24 * 3600),
            session_idle_ttl: Duration::from_secs(7 * 24 * 3600),
            refresh_retry_window: Duration::from_secs(10 * 60),
            clock_leeway: Duration::from_secs(60),
            audit_refreshes: true,
            verified_token_cache: 50_000,
            binding_required_tenants: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            json: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub(crate) String);

fn is_http_url(issuer: &str) -> bool {
    ["https://", "http://"].iter().any(|scheme| {
        issuer
            .strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
    })
}

impl Config {
    /// Every problem of the settings, or nothing.
    pub fn check(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems.join("; ")))
        }
    }

    /// Every problem of the settings, each naming the setting.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let t = &self.tokens;
        let positive = [
            ("tokens.access_ttl", t.access_ttl),
            ("tokens.session_absolute_ttl", t.session_absolute_ttl),
            ("tokens.session_idle_ttl", t.session_idle_ttl),
            ("tokens.refresh_retry_window", t.refresh_retry_window),
            ("request_timeout", self.request_timeout),
            ("state_sync_interval", self.state_sync_interval),
            ("watch_heartbeat", self.watch_heartbeat),
            ("sidecar.max_staleness", self.sidecar.max_staleness),
            ("purge.interval", self.purge.interval),
            (
                "telemetry.metrics_interval",
                self.telemetry.metrics_interval,
            ),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if let Err(e) = self.connections.check() {
            problems.push(e.0);
        }
        if t.issuer.is_empty() {
            problems.push("tokens.issuer must not be empty".to_owned());
        }
        if self.purge.batch_size == 0 {
            problems.push("purge.batch_size must be at least 1".to_owned());
        }
        if self.database.max_connections == Some(0) {
            problems.push("database.max_connections must be at least 1".to_owned());
        }
        if self.health.max_state_age <= self.state_sync_interval {
            problems.push(format!(
                "health.max_state_age ({}) must be longer than state_sync_interval ({}): readiness would flap between two syncs",
                humantime_serde::re::humantime::format_duration(self.health.max_state_age),
                humantime_serde::re::humantime::format_duration(self.state_sync_interval),
            ));
        }
        if self.http.listen.is_some() && !is_http_url(&t.issuer) {
            problems.push(format!(
                "tokens.issuer ({:?}) must be an http(s) URL when the HTTP listener is on: OpenID discovery clients fetch <issuer>/.well-known/openid-configuration and require its `issuer` to be that URL (set it to http.public_url, e.g. \"https://auth.example.internal\")",
                t.issuer
            ));
        }
        if self.http.tls && !self.tls.is_enabled() {
            problems.push(
                "http.tls needs [tls] cert_file and key_file: the HTTP listener serves the gRPC port's certificate".to_owned(),
            );
        }
        if self.keys.publish_ahead < self.http.jwks_max_age {
            problems.push(format!(
                "keys.publish_ahead ({}) must be at least http.jwks_max_age ({}): a cached key set must know a key before tokens carry it",
                humantime_serde::re::humantime::format_duration(self.keys.publish_ahead),
                humantime_serde::re::humantime::format_duration(self.http.jwks_max_age),
            ));
        }
        problems.extend(self.keys.problems());
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            problems.push("tls.cert_file and tls.key_file go together".to_owned());
        }
        if self.tls.client_ca_file.is_some() && !self.tls.is_enabled() {
            problems.push("tls.client_ca_file needs tls.cert_file and tls.key_file".to_owned());
        }
        let uses_identities = self.auth.callers.iter().any(|c| !c.identities.is_empty());
        if uses_identities && self.tls.client_ca_file.is_none() {
            problems.push("auth.callers with identities need tls.client_ca_file to verify client certificates".to_owned());
        }
        problems.extend(self.binding_problems());
        // The callers are checked where the access policy is built from
        // them (`access::Policy::new`), once, at start.
        problems
    }

    /// The settings of certificate-bound tokens.
    fn binding_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for tenant in &self.tokens.binding_required_tenants {
            if let Err(e) =
                crate::verify::input::tenant_id("tokens.binding_required_tenants", tenant)
            {
                problems.push(format!("{tenant:?}: {e}"));
            }
        }
        if let Some(name) = &self.http.client_certificate_header {
            let lower = name.to_ascii_lowercase();
            if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                problems.push(format!(
                    "http.client_certificate_header ({name:?}) is not a header name"
                ));
            } else if ["authorization", crate::transport::http::GATEWAY_KEY_HEADER]
                .contains(&lower.as_str())
            {
                problems.push(format!(
                    "http.client_certificate_header ({name:?}) must not be a credentials header"
                ));
            }
        }
        problems
    }

    /// Whether callers must authenticate (some caller is configured).
    pub fn has_authentication(&self) -> bool {
        !self.auth.callers.is_empty()
    }

    /// Off loopback, a server needs authentication, and bearer keys need TLS
    /// (they would cross the network in clear text), unless the operator
    /// said `--insecure`.
    pub fn check_exposure(&self, listen: SocketAddr, insecure: bool) -> Result<(), ConfigError> {
        if listen.ip().is_loopback() {
            return Ok(());
        }
        let bearer_keys = self.auth.callers.iter().any(|c| !c.key_sha256.is_empty());
        if bearer_keys && !self.tls.is_enabled() {
            if insecure {
                tracing::warn!(%listen, "bearer keys accepted WITHOUT TLS on a non-loopback address (--insecure): anyone on the path can read and reuse them");
                return Ok(());
            }
            return Err(ConfigError(format!(
                "refusing to accept bearer keys in clear text on {listen}: configure [tls], listen on a loopback address, or pass --insecure"
            )));
        }
        if self.has_authentication() {
            return Ok(());
        }
        if insecure {
            tracing::warn!(%listen, "serving WITHOUT authentication on a non-loopback address (--insecure): anyone who can reach it can issue and revoke tokens");
            return Ok(());
        }
        Err(ConfigError(format!(
            "refusing to listen on {listen} without authentication: configure [[auth.callers]] (bearer keys or client certificates), listen on a loopback address, or pass --insecure"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::config::CallerConfig;

    #[test]
    fn the_defaults_pass_the_check() {
        Config::default().check().expect("defaults are valid");
    }

    #[test]
    fn each_bad_setting_is_refused_by_name() {
        type Tweak = fn(&mut Config);
        let cases: &[(&str, Tweak)] = &[
            ("tokens.access_ttl", |c| {
                c.tokens.access_ttl = Duration::ZERO
            }),
            ("tokens.refresh_retry_window", |c| {
                c.tokens.refresh_retry_window = Duration::ZERO
            }),
            ("request_timeout", |c| c.request_timeout = Duration::ZERO),
            ("purge.interval", |c| c.purge.interval = Duration::ZERO),
            ("tokens.issuer", |c| c.tokens.issuer.clear()),
            ("purge.batch_size", |c| c.purge.batch_size = 0),
            ("database.max_connections", |c| {
                c.database.max_connections = Some(0)
            }),
            ("keys.publish_ahead", |c| {
                c.keys.publish_ahead = c.http.jwks_max_age / 2
            }),
            ("tls.cert_file and tls.key_file", |c| {
                c.tls.cert_file = Some("server.pem".into())
            }),
            ("keys.kek_command must not be empty", |c| {
                c.keys.kek_command = Some(" ".into())
            }),
            (
                "keys.previous_kek_file and keys.previous_kek_command",
                |c| {
                    c.keys.previous_kek_file = Some("old.kek".into());
                    c.keys.previous_kek_command = Some("cat old.kek".into());
                },
            ),
            ("keys.previous_kek_file is keys.kek_file", |c| {
                c.keys.previous_kek_file = c.keys.kek_file.clone()
            }),
            ("tls.client_ca_file needs", |c| {
                c.tls.client_ca_file = Some("ca.pem".into())
            }),
            ("tokens.binding_required_tenants", |c| {
                c.tokens.binding_required_tenants = vec!["a b".into()]
            }),
            ("http.client_certificate_header", |c| {
                c.http.client_certificate_header = Some("client cert".into())
            }),
            ("http.client_certificate_header", |c| {
                c.http.client_certificate_header = Some("Authorization".into())
            }),
            ("need tls.client_ca_file", |c| {
                c.auth.callers.push(CallerConfig {
                    name: "login".into(),
                    key_sha256: vec![],
                    identities: vec!["spiffe://corp/login".into()],
                    permissions: vec![crate::access::Permission::Issue],
                    tenants: vec!["acme".into()],
                    rate: None,
                    exchange: None,
                })
            }),
        ];
        for (named, tweak) in cases {
            let mut config = Config::default();
            tweak(&mut config);
            let error = config.check().expect_err(named).to_string();
            assert!(error.contains(named), "{named}: {error}");
        }
    }
}
