//! Sidecar mode: a local validator following an authority through
//! WatchRevocations; in-process for timing assertions, and as a real
//! `token-authority sidecar` process.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::*;
use crate::processes::free_port;
use token_authority::access::Permission;
use token_authority::config::Config;
use token_authority::proto as pb;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::sidecar::{Sidecar, Upstream};
use token_authority::telemetry::Telemetry;

const HEARTBEAT: Duration = Duration::from_millis(200);

pub struct TestSidecar {
    pub client: Client,
    channel: Channel,
    http_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestSidecar {
    /// An in-process sidecar of `authority`, on the authority's clock.
    async fn start(authority: &TestServer, max_staleness: Duration) -> Self {
        Self::start_with(authority, max_staleness, |_| {}).await
    }

    /// Like `start`, after `tweak` adjusted the sidecar's config.
    pub async fn start_with(
        authority: &TestServer,
        max_staleness: Duration,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::default();
        config.sidecar.upstream = Some(format!("http://{}", authority.addr));
        config.sidecar.max_staleness = max_staleness;
        config.watch_heartbeat = HEARTBEAT;
        tweak(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let sidecar = Arc::new(
            Sidecar::new(
                config.tokens.issuer.clone(),
                config.tokens.verified_token_cache,
                config.tokens.clock_leeway,
                max_staleness,
                authority.clock.clone(),
            )
            .with_binding_required(config.tokens.binding_required_tenants.clone()),
        );
        let upstream =
            Upstream::from_config(&config.sidecar, config.watch_heartbeat, false).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let telemetry = Telemetry::new(&config.telemetry).unwrap();
            token_authority::sidecar::serve(
                sidecar,
                upstream,
                &config,
                &telemetry,
                listener,
                Some(http),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .expect("sidecar runs");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: TokenAuthorityClient::new(channel.clone()),
            channel,
            http_addr,
            shutdown: Some(tx),
        }
    }

    async fn validate(&self, access_token: &str) -> Result<pb::Claims, tonic::Status> {
        validate_with(&mut self.client.clone(), access_token).await
    }

    async fn health(&self, service: &str) -> i32 {
        HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }
}

impl Drop for TestSidecar {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A `token-authority sidecar` process following `upstream` (plain HTTP,
/// loopback), with `env` added, once it validates `token`.
pub struct SidecarProcess {
    pub client: Client,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl SidecarProcess {
    pub async fn start(
        upstream: SocketAddr,
        env: &[(&str, &std::ffi::OsStr)],
        token: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = crate::logs::child_log_path("sidecar", &dir.path().join("sidecar.log"));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_token-authority"))
            .args([
                "sidecar",
                "--upstream",
                &format!("http://{upstream}"),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .current_dir(dir.path())
            .env("TOKEN_AUTHORITY_WATCH_HEARTBEAT", "200ms")
            .env("TOKEN_AUTHORITY_LOG__FILTER", crate::logs::FILTER)
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut client = None;
        within(
            Duration::from_secs(30),
            "sidecar process validating",
            async || {
                let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                else {
                    return false;
                };
                let mut c = TokenAuthorityClient::new(channel);
                let ok = validate_with(&mut c, token).await.is_ok();
                client = Some(c);
                ok
            },
        )
        .await;
        Self {
            client: client.unwrap(),
            _child: child,
            _dir: dir,
        }
    }
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

/// Polls `check` every 10 ms until it holds; returns how long that took.
async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sidecar_validates_locally_and_follows_revocations_and_keys(backend: Backend) {
    let authority = TestServer::start_with(backend, |c| c.watch_heartbeat = HEARTBEAT).await;
    let sidecar = TestSidecar::start(&authority, Duration::from_secs(60)).await;
    within(Duration::from_secs(5), "sidecar in step", async || {
        sidecar.health("").await == SERVING
    })
    .await;

    let pair = authority.issue("acme", "alice").await;
    let claims = sidecar
        .validate(&pair.access_token)
        .await
        .expect("validated by the sidecar");
    assert_eq!(claims.subject, "alice");
    let refused = sidecar
        .client
        .clone()
        .issue(issue_request("acme", "bob"))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::Unimplemented);
    // It has no signing key: it does not mint exchanged tokens either.
    let refused = sidecar
        .client
        .clone()
        .exchange(pb::ExchangeRequest {
            subject_token: pair.access_token.clone(),
            audience: "billing".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::Unimplemented);

    // A revocation on the authority reaches the sidecar within the bound.
    authority.revoke("acme", &pair.session_id).await;
    let delay = within(
        Duration::from_millis(500),
        "revocation at the sidecar",
        async || {
            sidecar
                .validate(&pair.access_token)
                .await
                .is_err_and(|s| reason(&s) == "SESSION_REVOKED")
        },
    )
    .await;
    eprintln!("revocation reached the sidecar in {delay:?}");

    // A new key reaches it before any token carries it.
    let key = authority.rotate_key("", None).await;
    let delay = within(
        Duration::from_millis(500),
        "new key at the sidecar",
        async || {
            sidecar
                .client
                .clone()
                .get_jwks(pb::GetJwksRequest {})
                .await
                .is_ok_and(|r| r.into_inner().keys.iter().any(|k| k.kid == key.kid))
        },
    )
    .await;
    eprintln!("key rotation reached the sidecar in {delay:?}");
    authority
        .clock
        .advance(authority.config.keys.publish_ahead + Duration::from_secs(1));
    let signed_by_new_key = authority.issue("acme", "carol").await;
    let claims = sidecar
        .validate(&signed_by_new_key.access_token)
        .await
        .unwrap();
    assert_eq!(claims.key_id, key.kid);
}

async fn sidecar_keeps_validating_while_the_authority_is_down_and_says_so(backend: Backend) {
    const MAX_STALENESS: Duration = Duration::from_secs(2);
    let authority = TestServer::start_with(backend, |c| c.watch_heartbeat = HEARTBEAT).await;
    let sidecar = TestSidecar::start(&authority, MAX_STALENESS).await;
    let pair = authority.issue("acme", "alice").await;
    within(Duration::from_secs(5), "validated", async || {
        sidecar.validate(&pair.access_token).await.is_ok()
    })
    .await;
    within(Duration::from_secs(1), "upstream reported up", async || {
        sidecar.health("token_authority.v1.Upstream").await == SERVING
    })
    .await;

    let mut authority = authority;
    authority.stop().await;
    let stopped = Instant::now();
    within(
        Duration::from_secs(2),
        "upstream reported down",
        async || sidecar.health("token_authority.v1.Upstream").await == NOT_SERVING,
    )
    .await;
    // Still validating, and saying why it may be behind.
    sidecar
        .validate(&pair.access_token)
        .await
        .expect("validates with cached state");
    assert_eq!(sidecar.health("").await, SERVING);
    let healthz = http_get(sidecar.http_addr, "/healthz", &[]).await;
    assert_eq!(healthz.status, 200);
    let body = healthz.json();
    assert_eq!(body["upstream_connected"], false);
    assert!(
        body["status"].as_str().unwrap().starts_with("degraded"),
        "{body}"
    );

    // Beyond the staleness bound: fail closed.
    tokio::time::sleep(
        (MAX_STALENESS + Duration::from_millis(300)).saturating_sub(stopped.elapsed()),
    )
    .await;
    assert_error(
        sidecar.validate(&pair.access_token).await,
        Code::Unavailable,
        "VALIDATION_STATE_STALE",
    );
    within(Duration::from_secs(1), "overall health down", async || {
        sidecar.health("").await == NOT_SERVING
    })
    .await;
    assert_eq!(
        http_get(sidecar.http_addr, "/healthz", &[]).await.status,
        503
    );

    // The authority returns: the sidecar catches up by itself, including a
    // revocation made after the restart.
    let authority = authority.restart_in_place().await;
    within(
        Duration::from_secs(10),
        "sidecar back in step",
        async || sidecar.validate(&pair.access_token).await.is_ok(),
    )
    .await;
    authority.revoke("acme", &pair.session_id).await;
    within(
        Duration::from_millis(500),
        "revocation after restart",
        async || {
            sidecar
                .validate(&pair.access_token)
                .await
                .is_err_and(|s| reason(&s) == "SESSION_REVOKED")
        },
    )
    .await;
    within(
        Duration::from_secs(1),
        "upstream reported up again",
        async || sidecar.health("token_authority.v1.Upstream").await == SERVING,
    )
    .await;
}

/// An authority cut off from its database keeps its stream alive, but its
/// state ages: its sidecars must count that, not just the heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_goes_stale_with_an_authority_cut_off_from_its_database() {
    const MAX_STALENESS: Duration = Duration::from_secs(2);
    let pg = crate::processes::PgServer::start();
    let url = pg.url();
    // The authority's database is this test's own server, which it stops.
    let authority = TestServer::start_with(Backend::Sqlite, |c| {
        c.database.url = url;
        c.watch_heartbeat = HEARTBEAT;
        c.database.acquire_timeout = Duration::from_millis(500);
        c.database.connect_timeout = Duration::from_millis(500);
    })
    .await;
    let sidecar = TestSidecar::start(&authority, MAX_STALENESS).await;
    let pair = authority.issue("acme", "alice").await;
    within(Duration::from_secs(5), "validated", async || {
        sidecar.validate(&pair.access_token).await.is_ok()
    })
    .await;

    let stopping = Instant::now();
    pg.stop();
    within(Duration::from_secs(10), "sidecar stale", async || {
        sidecar
            .validate(&pair.access_token)
            .await
            .is_err_and(|s| reason(&s) == "VALIDATION_STATE_STALE")
    })
    .await;
    // State counts as complete from the start of the last good sync, which
    // may precede the outage by up to one state_sync_interval (250 ms).
    assert!(
        stopping.elapsed() >= MAX_STALENESS - Duration::from_millis(250),
        "stale after {:?}, before the bound",
        stopping.elapsed()
    );
    // The stream itself never broke.
    assert_eq!(sidecar.health("token_authority.v1.Upstream").await, SERVING);

    pg.start_again();
    within(
        Duration::from_secs(20),
        "fresh again once the database is back",
        async || sidecar.validate(&pair.access_token).await.is_ok(),
    )
    .await;
}

#[test]
fn a_plain_http_upstream_off_loopback_needs_insecure() {
    let config = |url: &str| token_authority::config::SidecarConfig {
        upstream: Some(url.into()),
        ..Default::default()
    };
    let remote = config("http://10.0.0.5:50051");
    let refused = Upstream::from_config(&remote, HEARTBEAT, false)
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("plain HTTP"), "{refused}");
    assert!(Upstream::from_config(&remote, HEARTBEAT, true).is_ok());
    for fine in [
        "http://127.0.0.1:50051",
        "http://[::1]:50051",
        "http://localhost:50051",
        "https://10.0.0.5:50051",
    ] {
        assert!(
            Upstream::from_config(&config(fine), HEARTBEAT, false).is_ok(),
            "{fine}"
        );
    }
}

/// The real binary: `token-authority sidecar --upstream …`, authenticating
/// upstream with a bearer key from a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_process_follows_an_authority_that_requires_credentials() {
    let admin = TestCaller::new("admin", &[Permission::All], &["*"]);
    let follower = TestCaller::new("sidecar", &[Permission::WatchRevocations], &["*"]);
    let authority = TestServer::start_with(Backend::Sqlite, |c| {
        c.auth.callers = vec![admin.config.clone(), follower.config.clone()];
        c.watch_heartbeat = HEARTBEAT;
    })
    .await;
    let pair = authority
        .client()
        .issue(admin.request(issue_request("acme", "alice")))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("upstream.key");
    std::fs::write(&key_file, &follower.key).unwrap();
    let sidecar = SidecarProcess::start(
        authority.addr,
        &[(
            "TOKEN_AUTHORITY_SIDECAR__UPSTREAM_KEY_FILE",
            key_file.as_os_str(),
        )],
        &pair.access_token,
    )
    .await;
    let mut client = sidecar.client.clone();
    let claims = validate_with(&mut client, &pair.access_token)
        .await
        .unwrap();
    assert_eq!(claims.subject, "alice");
    assert_error(
        validate_with(&mut client, "not-a-token").await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // Upstream, the sidecar's key grants nothing but following.
    let refused = authority
        .client()
        .validate(follower.request(pb::ValidateRequest {
            access_token: pair.access_token.clone(),
            ..Default::default()
        }))
        .await;
    assert_error(refused, Code::PermissionDenied, "PERMISSION_NOT_GRANTED");
}

/// The sidecar's HTTP listener answers introspection and forward-auth from
/// its copy of the state, and neither says anything about tokens once
/// that copy is too old: 503, never `active:false` nor an allow.
async fn sidecar_introspects_and_decides_forward_auth_until_stale(backend: Backend) {
    const MAX_STALENESS: Duration = Duration::from_secs(2);
    let authority = TestServer::start_with(backend, |c| c.watch_heartbeat = HEARTBEAT).await;
    let sidecar = TestSidecar::start(&authority, MAX_STALENESS).await;
    let pair = authority.issue("acme", "alice").await;
    let revoked = authority.issue("acme", "mallory").await;
    within(Duration::from_secs(5), "validated", async || {
        sidecar.validate(&pair.access_token).await.is_ok()
    })
    .await;
    let introspect = async |token: &str| {
        http_post_form(
            sidecar.http_addr,
            "/oauth2/introspect",
            &[],
            &format!("token={token}"),
        )
        .await
    };
    let authz = async |token: &str| {
        let bearer = format!("Bearer {token}");
        http_get(
            sidecar.http_addr,
            "/authz?audience=api&tenant=acme",
            &[("Authorization", &bearer)],
        )
        .await
    };
    let active = introspect(&pair.access_token).await;
    assert_eq!(active.status, 200, "{active:?}");
    assert_eq!(active.json()["sub"], "alice");
    let allowed = authz(&pair.access_token).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("x-auth-subject"), Some("alice"));

    authority.revoke("acme", &revoked.session_id).await;
    within(Duration::from_secs(5), "revocation followed", async || {
        sidecar.validate(&revoked.access_token).await.is_err()
    })
    .await;
    let inactive = introspect(&revoked.access_token).await;
    assert_eq!(inactive.json(), serde_json::json!({ "active": false }));
    let denied = authz(&revoked.access_token).await;
    assert_eq!(denied.status, 401, "{denied:?}");

    let mut authority = authority;
    authority.stop().await;
    within(Duration::from_secs(5), "stale", async || {
        sidecar.validate(&pair.access_token).await.is_err()
    })
    .await;
    let unavailable = introspect(&pair.access_token).await;
    assert_eq!(unavailable.status, 503, "{unavailable:?}");
    assert_eq!(unavailable.json()["error"], "temporarily_unavailable");
    assert_eq!(authz(&pair.access_token).await.status, 503);
}

crate::on_both_backends!(
    sidecar_validates_locally_and_follows_revocations_and_keys,
    sidecar_keeps_validating_while_the_authority_is_down_and_says_so,
    sidecar_introspects_and_decides_forward_auth_until_stale,
);
