//! Test harness: the real server, in-process on an ephemeral loopback port,
//! with a controllable clock, reached through a real tonic client.
use std::net::SocketAddr;
use std::sync::Arc;

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use token_authority::access::config::{CallerConfig, ExchangeConfig};
use token_authority::access::{new_bearer_key, Permission};
use token_authority::app::App;
use token_authority::config::Config;
use token_authority::domain::audit::AuditKind;
use token_authority::domain::Authority;
use token_authority::jobs::purge::Purger;
use token_authority::proto::admin_client::AdminClient;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{self as pb};
use token_authority::storage::audit::StoredAuditEvent;
use token_authority::storage::Store;
use token_authority::verify::clock::ManualClock;

pub type Client = TokenAuthorityClient<Channel>;

/// The default `tokens.clock_leeway`: tokens validate this long past `exp`.
pub const LEEWAY: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a test server keeps its data. Every test body runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn name(backend: Backend)` once per backend, as
/// the tests `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The PostgreSQL server tests use: `scripts/with-postgres.sh` starts a
/// throwaway one and sets this; a developer may point it at their own.
pub const POSTGRES_URL_VAR: &str = "TA_TEST_POSTGRES_URL";

/// A fresh, empty database for one test.
pub async fn database_url(backend: Backend, dir: &TempDir) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/authority.db", dir.path().display()),
        Backend::Postgres => fresh_postgres_database().await,
    }
}

pub async fn fresh_postgres_database() -> String {
    use sea_orm::ConnectionTrait;
    let admin_url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!("{POSTGRES_URL_VAR} is not set: run the tests through scripts/test.sh (it starts a throwaway PostgreSQL) or point it at a server")
    });
    let name = format!("ta_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(admin_url.as_str())
        .await
        .expect("connect to the test PostgreSQL server");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("postgres URL ends with /database");
    format!("{base}/{name}")
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// The HTTP listener (JWKS, discovery, health).
    pub http_addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub client: Client,
    pub channel: Channel,
    pub config: Config,
    pub authority: Arc<Authority>,
    pub store: Store,
    pub purger: Arc<Purger>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Arc<TempDir>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server on a fresh database, after `tweak` adjusted its config.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = Config::default();
        config.database.url = database_url(backend, &dir).await;
        config.keys.kek_file = Some(dir.path().join("token-authority.kek"));
        tweak(&mut config);
        Self::start_on(config, Arc::new(ManualClock::starting_now()), dir, None).await
    }

    /// Like `start_with`, with the HTTP listener on `http_at` (known before
    /// the config is, e.g. for an issuer URL naming it).
    pub async fn start_with_http_at(
        backend: Backend,
        http_at: SocketAddr,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = Config::default();
        config.database.url = database_url(backend, &dir).await;
        config.keys.kek_file = Some(dir.path().join("token-authority.kek"));
        tweak(&mut config);
        let grpc_at = SocketAddr::from(([127, 0, 0, 1], 0));
        let clock = Arc::new(ManualClock::starting_now());
        Self::start_on(config, clock, dir, Some((grpc_at, http_at))).await
    }

    /// Starts another server on the same database and clock (a restart).
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let (config, clock, dir) = (self.config.clone(), self.clock.clone(), self._dir.clone());
        Self::start_on(config, clock, dir, None).await
    }

    /// Another replica on the same database and key-encryption key, with a
    /// clock of its own `offset_ms` off the real time.
    pub async fn replica(&self, offset_ms: i64) -> Self {
        use token_authority::verify::clock::{Clock, SystemClock};
        let clock = Arc::new(ManualClock::new(SystemClock.now_millis() + offset_ms));
        Self::start_on(self.config.clone(), clock, self._dir.clone(), None).await
    }

    /// Stops and starts again on the same addresses (clients that only know
    /// the address, like a sidecar, find it again).
    pub async fn restart_in_place(mut self) -> Self {
        self.stop().await;
        let (config, clock, dir) = (self.config.clone(), self.clock.clone(), self._dir.clone());
        Self::start_on(config, clock, dir, Some((self.addr, self.http_addr))).await
    }

    async fn start_on(
        config: Config,
        clock: Arc<ManualClock>,
        dir: Arc<TempDir>,
        at: Option<(SocketAddr, SocketAddr)>,
    ) -> Self {
        crate::logs::capture();
        let (grpc_at, http_at) = at.unwrap_or((
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ));
        let listener = TcpListener::bind(grpc_at).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let http = TcpListener::bind(http_at).await.expect("bind");
        let http_addr = http.local_addr().expect("addr");
        let app = App::build(config.clone(), clock.clone())
            .await
            .expect("app starts");
        let authority = app.authority.clone();
        let store = app.store.clone();
        let purger = app.purger.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.serve(listener, Some(http), async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("client connects");
        let client = TokenAuthorityClient::new(channel.clone());
        Self {
            addr,
            http_addr,
            clock,
            client,
            channel,
            config,
            authority,
            store,
            purger,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// Rows in the sessions table, counted in the database.
    pub async fn session_rows(&self) -> u64 {
        self.store.session_rows().await.expect("count")
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn admin_client(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// A client of Envoy's external authorization API on this server.
    pub fn authz_client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::new(self.channel.clone())
    }

    /// Waits (up to 5 s) until at least `n` audit events of `kind` are
    /// stored: refusals are written asynchronously.
    pub async fn audit_events(&self, kind: AuditKind, n: usize) -> Vec<StoredAuditEvent> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let events = self
                .store
                .audit_events_of_kind(kind)
                .await
                .expect("audit events");
            if events.len() >= n || std::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn issue(&self, tenant: &str, subject: &str) -> pb::TokenPair {
        issue_with(&mut self.client(), tenant, subject).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<pb::TokenPair, Status> {
        refresh_with(&mut self.client(), refresh_token).await
    }

    pub async fn validate(&self, access_token: &str) -> Result<pb::Claims, Status> {
        validate_with(&mut self.client(), access_token).await
    }

    /// Revokes one session by id (it must exist).
    pub async fn revoke(&self, tenant: &str, session_id: &str) {
        revoke_with(&mut self.client(), tenant, session_id).await;
    }

    /// Adds a signing key through the Admin RPC (`""`: the configured algorithm).
    pub async fn rotate_key(
        &self,
        algorithm: &str,
        activate_in: Option<std::time::Duration>,
    ) -> pb::SigningKey {
        self.admin_client()
            .rotate_signing_key(pb::RotateSigningKeyRequest {
                algorithm: algorithm.into(),
                activate_in: activate_in.map(|d| prost_types::Duration::try_from(d).unwrap()),
            })
            .await
            .expect("rotate")
            .into_inner()
    }

    pub async fn list(&self, tenant: &str, subject: &str) -> Vec<pb::Session> {
        self.client()
            .list_sessions(pb::ListSessionsRequest {
                tenant_id: tenant.into(),
                subject: subject.into(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .sessions
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn issue_with(client: &mut Client, tenant: &str, subject: &str) -> pb::TokenPair {
    client
        .issue(issue_request(tenant, subject))
        .await
        .expect("issue")
        .into_inner()
        .tokens
        .expect("tokens")
}

pub async fn refresh_with(
    client: &mut Client,
    refresh_token: &str,
) -> Result<pb::TokenPair, Status> {
    client
        .refresh(pb::RefreshRequest {
            refresh_token: refresh_token.to_owned(),
            device: None,
            binding: None,
        })
        .await
        .map(|r| r.into_inner().tokens.expect("tokens"))
}

pub async fn revoke_with(client: &mut Client, tenant: &str, session_id: &str) {
    client
        .revoke(pb::RevokeRequest {
            tenant_id: tenant.into(),
            target: Some(pb::revoke_request::Target::SessionId(session_id.into())),
            reason: "test".into(),
        })
        .await
        .expect("revoke");
}

/// A tool installed into `.venv/bin` by scripts/install-test-tools.sh, or
/// where `var` points.
pub fn venv_tool(var: &str, name: &str) -> std::path::PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return path.into();
    }
    let local = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        local.exists(),
        "{name} not found: run the tests through scripts/test.sh, or set {var}"
    );
    local
}

pub async fn validate_with(client: &mut Client, access_token: &str) -> Result<pb::Claims, Status> {
    client
        .validate(pb::ValidateRequest {
            access_token: access_token.to_owned(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().claims.expect("claims"))
}

/// A configured caller and the bearer key it authenticates with.
pub struct TestCaller {
    pub config: CallerConfig,
    pub key: String,
}

impl TestCaller {
    pub fn new(name: &str, permissions: &[Permission], tenants: &[&str]) -> Self {
        let (key, digest) = new_bearer_key().expect("random key");
        Self {
            config: CallerConfig {
                name: name.into(),
                key_sha256: vec![digest.to_hex()],
                identities: Vec::new(),
                permissions: permissions.to_vec(),
                tenants: tenants.iter().map(|t| t.to_string()).collect(),
                rate: None,
                exchange: None,
            },
            key,
        }
    }

    /// Lets the caller exchange tokens addressed to `subject_audiences`
    /// for tokens addressed to `target_audiences`.
    pub fn with_exchange(mut self, subject_audiences: &[&str], target_audiences: &[&str]) -> Self {
        let list = |l: &[&str]| l.iter().map(|a| a.to_string()).collect();
        self.config.exchange = Some(ExchangeConfig {
            subject_audiences: list(subject_audiences),
            target_audiences: list(target_audiences),
        });
        self
    }

    /// `message` as a request carrying this caller's bearer key.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        with_bearer(message, &self.key)
    }
}

/// `message` with `authorization: Bearer <key>`.
pub fn with_bearer<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header value"),
    );
    request
}

pub fn issue_request(tenant: &str, subject: &str) -> pb::IssueRequest {
    pb::IssueRequest {
        tenant_id: tenant.into(),
        subject: subject.into(),
        audience: "api".into(),
        scopes: vec!["read".into(), "write".into()],
        device: Some(pb::Device {
            name: "laptop".into(),
            user_agent: "Mozilla/5.0 (test)".into(),
            ip: "192.0.2.10".into(),
        }),
        extra_claims: None,
        binding: None,
    }
}

/// The claims of an access token, decoded without checking the signature
/// (that is Validate's job; this shows what a resource server reads).
pub fn access_token_payload(token: &str) -> serde_json::Map<String, serde_json::Value> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

/// The google.rpc.ErrorInfo reason of an error status.
pub fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| {
            assert_eq!(info.domain, "token-authority");
            info.reason
        })
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

/// Asserts an error's code and reason.
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    expected: &str,
) -> Status {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected, "{status:?}");
    status
}

/// Asserts INVALID_ARGUMENT naming `field` in a google.rpc.BadRequest.
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = assert_error(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    let bad = status
        .get_details_bad_request()
        .expect("BadRequest details");
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "expected violation of {field}, got {:?}",
        bad.field_violations
    );
}

/// A plain HTTP/1.1 response, as read by `http_get`.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `GET path` on a loopback HTTP listener, with extra request headers.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(addr, "GET", path, headers, "").await
}

/// `POST path` with a form body (`application/x-www-form-urlencoded`).
pub async fn http_post_form(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    form: &str,
) -> HttpResponse {
    let mut with_type = vec![("Content-Type", "application/x-www-form-urlencoded")];
    with_type.extend_from_slice(headers);
    http_request(addr, "POST", path, &with_type, form).await
}

/// One HTTP/1.1 request on a loopback listener, over a fresh connection.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The kids of the key set `client` publishes (GetJwks), sorted.
pub async fn jwks_kids(client: &mut Client) -> Vec<String> {
    let mut kids: Vec<String> = client
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("GetJwks")
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    kids.sort();
    kids
}
