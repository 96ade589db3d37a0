//! Forward-auth (`/authz`) behind a real NGINX (Debian's package, with
//! `auth_request`; installed by scripts/install-test-tools.sh): what
//! reaches the upstream, and what the client gets, for each kind of token.
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;

use crate::common::*;
use crate::processes::free_port;
use token_authority::access::Permission;
use token_authority::proto as pb;

const NGINX_VAR: &str = "TA_TEST_NGINX";
const NGINX: &str = "/usr/sbin/nginx";

crate::on_both_backends!(nginx_forwards_only_verified_identities);

async fn nginx_forwards_only_verified_identities(backend: Backend) {
    let gateway = TestCaller::new("nginx", &[Permission::Check], &["*"]);
    let admin = TestCaller::new("admin", &[Permission::All], &["*"]);
    let server = TestServer::start_with(backend, |config| {
        config.auth.callers = vec![gateway.config.clone(), admin.config.clone()];
    })
    .await;
    let upstream = Upstream::start().await;
    let nginx = Nginx::start(server.http_addr, upstream.addr, &gateway.key).await;

    let issue = |subject: &'static str| {
        let mut client = server.client();
        let request = admin.request(issue_request("acme", subject));
        async move {
            let response = client.issue(request).await.unwrap().into_inner();
            response.tokens.unwrap()
        }
    };
    let alice = issue("alice").await;
    let revoked = issue("mallory").await;
    server
        .client()
        .revoke(admin.request(pb::RevokeRequest {
            tenant_id: "acme".into(),
            target: Some(pb::revoke_request::Target::SessionId(
                revoked.session_id.clone(),
            )),
            reason: "test".into(),
        }))
        .await
        .unwrap();
    let bearer = |token: &str| format!("Bearer {token}");
    let realm = "Bearer realm=\"token-authority\"";
    let invalid =
        |reason: &str| format!("{realm}, error=\"invalid_token\", error_description=\"{reason}\"");
    let mut matrix = Vec::new();

    // Valid: upstream sees the identity.
    let (got, seen) = nginx
        .get(
            &upstream,
            "/api/things",
            &[("Authorization", &bearer(&alice.access_token))],
        )
        .await;
    assert_eq!(got.status, 200, "{got:?}\n{}", nginx.log());
    let seen = seen.expect("the upstream is reached");
    assert_identity(&seen, "alice", &alice.session_id);
    matrix.push(("valid", describe(Some(&seen)), client_got(&got)));

    // Valid, with a client-forged identity header: replaced, never passed on.
    let (got, seen) = nginx
        .get(
            &upstream,
            "/api/things",
            &[
                ("Authorization", &bearer(&alice.access_token)),
                ("X-Auth-Subject", "admin"),
                ("X-Auth-Tenant", "globex"),
            ],
        )
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    let seen = seen.expect("the upstream is reached");
    assert_identity(&seen, "alice", &alice.session_id);
    matrix.push((
        "valid + forged X-Auth-Subject: admin",
        describe(Some(&seen)),
        client_got(&got),
    ));

    let denied: [(&str, Option<String>, u16, String, &str); 4] = [
        (
            "revoked session",
            Some(bearer(&revoked.access_token)),
            401,
            invalid("SESSION_REVOKED"),
            "/api/things",
        ),
        (
            "garbage",
            Some(bearer("garbage")),
            401,
            invalid("TOKEN_INVALID"),
            "/api/things",
        ),
        ("no token", None, 401, realm.to_owned(), "/api/things"),
        (
            "wrong audience",
            Some(bearer(&alice.access_token)),
            403,
            format!(
                "{realm}, error=\"insufficient_scope\", error_description=\"AUDIENCE_MISMATCH\""
            ),
            "/billing/invoices",
        ),
    ];
    for (kind, authorization, status, challenge, path) in denied {
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        let (got, seen) = nginx.get(&upstream, path, &headers).await;
        assert!(seen.is_none(), "{kind}: the upstream was reached");
        assert_eq!(got.status, status, "{kind}: {got:?}");
        assert_eq!(
            got.header("www-authenticate"),
            Some(challenge.as_str()),
            "{kind}"
        );
        matrix.push((kind, describe(None), client_got(&got)));
    }

    // A gateway whose key is refused: a server error, not a verdict on the user.
    let (got, seen) = nginx
        .get(
            &upstream,
            "/misconfigured/x",
            &[("Authorization", &bearer(&alice.access_token))],
        )
        .await;
    assert!(seen.is_none());
    assert_eq!(got.status, 500, "{got:?}");
    assert_eq!(got.header("www-authenticate"), None);
    matrix.push((
        "valid, gateway key refused",
        describe(None),
        client_got(&got),
    ));

    // Expired, past the leeway.
    server
        .clock
        .advance(Duration::from_secs(15 * 60) + LEEWAY + Duration::from_secs(1));
    let (got, seen) = nginx
        .get(
            &upstream,
            "/api/things",
            &[("Authorization", &bearer(&alice.access_token))],
        )
        .await;
    assert!(seen.is_none());
    assert_eq!(got.status, 401, "{got:?}");
    assert_eq!(
        got.header("www-authenticate"),
        Some(invalid("TOKEN_EXPIRED").as_str())
    );
    matrix.push(("expired", describe(None), client_got(&got)));

    eprintln!("NGINX auth_request matrix (token → upstream saw | client got):");
    for (kind, saw, got) in &matrix {
        eprintln!("  {kind:<38} → {saw} | {got}");
    }
    nginx.stop().await;
}

fn assert_identity(seen: &HeaderMap, subject: &str, session: &str) {
    let all = |name: &str| -> Vec<&str> {
        seen.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    // Described, not printed: the headers hold the user's token.
    let described = describe(Some(seen));
    assert_eq!(all("x-auth-subject"), [subject], "{described}");
    assert_eq!(all("x-auth-tenant"), ["acme"], "{described}");
    assert_eq!(all("x-auth-scopes"), ["read write"], "{described}");
    assert_eq!(all("x-auth-session-id"), [session], "{described}");
    assert!(seen.get("x-token-authority-key").is_none());
}

fn describe(seen: Option<&HeaderMap>) -> String {
    let Some(seen) = seen else {
        return "nothing".to_owned();
    };
    let value = |name: &str| {
        seen.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "subject={} tenant={} scopes=\"{}\" session=<id>",
        value("x-auth-subject"),
        value("x-auth-tenant"),
        value("x-auth-scopes")
    )
}

fn client_got(got: &HttpResponse) -> String {
    match got.header("www-authenticate") {
        Some(challenge) => format!("{} WWW-Authenticate: {challenge}", got.status),
        None => got.status.to_string(),
    }
}

/// A stand-in for the protected service: records each request's headers.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Upstream {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(headers);
                "upstream"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen }
    }

    fn take(&self) -> Vec<HeaderMap> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

struct Nginx {
    child: tokio::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// NGINX on a free loopback port, in the foreground, as one process
    /// (`master_process off`: no workers switching to another user), all
    /// its files in a temporary directory. `/api/` and `/billing/` need a
    /// token for audience `api` and `billing`; `/misconfigured/` sends a
    /// wrong gateway key.
    async fn start(authority: SocketAddr, upstream: SocketAddr, key: &str) -> Self {
        let binary = std::env::var(NGINX_VAR).unwrap_or_else(|_| NGINX.to_owned());
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} not found: run scripts/install-test-tools.sh (Debian package nginx), or set {NGINX_VAR}"
        );
        let dir = tempfile::tempdir().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let d = dir.path().display();
        let config = format!(
            "master_process off;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr};
{api}
{billing}
{misconfigured}
{authz_api}
{authz_billing}
{authz_wrong}
        location @forbidden {{
            add_header WWW-Authenticate $auth_challenge always;
            return 403;
        }}
    }}
}}
",
            api = protected("/api/", "/_authz_api", upstream),
            billing = protected("/billing/", "/_authz_billing", upstream),
            misconfigured = protected("/misconfigured/", "/_authz_wrong", upstream),
            authz_api = authz("/_authz_api", authority, "api", key),
            authz_billing = authz("/_authz_billing", authority, "billing", key),
            authz_wrong = authz("/_authz_wrong", authority, "api", "tak_not-the-key"),
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = tokio::process::Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let nginx = Self { child, addr, dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "NGINX does not listen on {addr}; its log:\n{}",
                nginx.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    /// `GET path` through NGINX: its answer, and the request the upstream
    /// saw, if any.
    async fn get(
        &self,
        upstream: &Upstream,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (HttpResponse, Option<HeaderMap>) {
        upstream.take();
        let got = http_get(self.addr, path, headers).await;
        let mut seen = upstream.take();
        assert!(seen.len() <= 1, "{} upstream requests", seen.len());
        (got, seen.pop())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// SIGKILL by the child's pid, then reap it.
    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// A location that sends each request to `auth` first, and upstream only
/// with the identity `auth` answered (replacing any the client sent).
/// NGINX passes a 401's `WWW-Authenticate` on by itself; a 403's needs
/// `@forbidden`.
fn protected(path: &str, auth: &str, upstream: SocketAddr) -> String {
    format!(
        "        location {path} {{
            auth_request {auth};
            auth_request_set $auth_subject $upstream_http_x_auth_subject;
            auth_request_set $auth_tenant $upstream_http_x_auth_tenant;
            auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
            auth_request_set $auth_session $upstream_http_x_auth_session_id;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;
            error_page 403 = @forbidden;
            proxy_set_header X-Auth-Subject $auth_subject;
            proxy_set_header X-Auth-Tenant $auth_tenant;
            proxy_set_header X-Auth-Scopes $auth_scopes;
            proxy_set_header X-Auth-Session-Id $auth_session;
            proxy_pass http://{upstream};
        }}"
    )
}

/// The subrequest location: `/authz` with the route's audience, the
/// gateway's key, no body.
fn authz(path: &str, authority: SocketAddr, audience: &str, key: &str) -> String {
    format!(
        "        location = {path} {{
            internal;
            proxy_pass http://{authority}/authz?audience={audience};
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Token-Authority-Key {key};
        }}"
    )
}
