//! TLS on the gRPC port: callers recognised by their client certificate's
//! SANs, mutual TLS required or optional, certificates generated per test.
use std::net::SocketAddr;
use std::time::Duration;

use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::certs::*;
use crate::common::*;
use token_authority::access::config::CallerConfig;
use token_authority::access::{new_bearer_key, Permission};
use token_authority::config::tls::ClientAuth;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{self as pb};

const LOGIN_ID: &str = "spiffe://test/ns/prod/sa/login";
const GATEWAY_ID: &str = "gateway.test";

/// A server with a certificate for 127.0.0.1 from `ca`, which also signs
/// the client certificates it accepts. The returned dir holds the PEM files.
async fn start_tls_server(
    ca: &Ca,
    client_auth: ClientAuth,
    callers: Vec<CallerConfig>,
) -> (TestServer, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = ServerFiles::write(ca, &dir);
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        files.configure(config, client_auth);
        config.auth.callers = callers;
    })
    .await;
    (server, dir)
}

/// Issue over `channel` (if it connected), with `authorization: Bearer <key>` if given.
async fn issue_over(
    channel: Result<Channel, tonic::transport::Error>,
    key: Option<&str>,
) -> Result<pb::IssueResponse, tonic::Status> {
    let channel = channel.map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let request = match key {
        Some(key) => with_bearer(issue_request("acme", "alice"), key),
        None => tonic::Request::new(issue_request("acme", "alice")),
    };
    TokenAuthorityClient::new(channel)
        .issue(request)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_sans_name_callers() {
    let ca = new_ca("test CA");
    let callers = vec![
        certificate_caller("login", LOGIN_ID, &[Permission::Issue]),
        certificate_caller("gateway", GATEWAY_ID, &[Permission::ListSessions]),
    ];
    let (server, _dir) = start_tls_server(&ca, ClientAuth::Required, callers).await;

    let login = connect(server.addr, &ca, Some(&client_cert(&ca, uri(LOGIN_ID))))
        .await
        .expect("login connects");
    let mut login = TokenAuthorityClient::new(login);
    let issued = login
        .issue(issue_request("acme", "alice"))
        .await
        .expect("login may issue")
        .into_inner()
        .tokens
        .expect("tokens");
    let status = assert_error(
        login
            .list_sessions(pb::ListSessionsRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_NOT_GRANTED",
    );
    assert!(status.message().contains("ListSessions"), "{status:?}");

    let gateway = connect(server.addr, &ca, Some(&client_cert(&ca, dns(GATEWAY_ID))))
        .await
        .expect("gateway connects");
    let mut gateway = TokenAuthorityClient::new(gateway);
    let sessions = gateway
        .list_sessions(pb::ListSessionsRequest {
            tenant_id: "acme".into(),
            subject: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("gateway may list")
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session_id, issued.session_id);
    assert_error(
        gateway.issue(issue_request("acme", "bob")).await,
        Code::PermissionDenied,
        "PERMISSION_NOT_GRANTED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_auth_refuses_connections_without_a_trusted_certificate() {
    let ca = new_ca("test CA");
    let other_ca = new_ca("other CA");
    // A key-holding caller too: a bearer key must not stand in for the certificate.
    let service = TestCaller::new("service", &[Permission::Issue], &["*"]);
    let callers = vec![
        certificate_caller("login", LOGIN_ID, &[Permission::Issue]),
        service.config.clone(),
    ];
    let (server, _dir) = start_tls_server(&ca, ClientAuth::Required, callers).await;
    let trusted = client_cert(&ca, uri(LOGIN_ID));
    let foreign = client_cert(&other_ca, uri(LOGIN_ID));

    issue_over(connect(server.addr, &ca, Some(&trusted)).await, None)
        .await
        .expect("a trusted certificate is admitted");
    let without_certificate =
        issue_over(connect(server.addr, &ca, None).await, Some(&service.key)).await;
    assert!(
        without_certificate.is_err(),
        "no client certificate: {without_certificate:?}"
    );
    let foreign_certificate =
        issue_over(connect(server.addr, &ca, Some(&foreign)).await, None).await;
    assert!(
        foreign_certificate.is_err(),
        "certificate from another CA: {foreign_certificate:?}"
    );
    let plaintext = Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .timeout(Duration::from_secs(10))
        .connect()
        .await;
    let plaintext = issue_over(plaintext, Some(&service.key)).await;
    assert!(plaintext.is_err(), "plaintext: {plaintext:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_takes_a_bearer_key_or_a_certificate() {
    let ca = new_ca("test CA");
    let other_ca = new_ca("other CA");
    let service = TestCaller::new("service", &[Permission::Issue], &["*"]);
    let callers = vec![
        certificate_caller("login", LOGIN_ID, &[Permission::Issue]),
        service.config.clone(),
    ];
    let (server, _dir) = start_tls_server(&ca, ClientAuth::Optional, callers).await;
    let issue = |identity: Option<Cert>, key: Option<String>| {
        let (addr, ca) = (server.addr, &ca);
        async move { issue_over(connect(addr, ca, identity.as_ref()).await, key.as_deref()).await }
    };

    issue(None, Some(service.key.clone()))
        .await
        .expect("a bearer key without a certificate");
    assert_error(
        issue(None, None).await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    issue(Some(client_cert(&ca, uri(LOGIN_ID))), None)
        .await
        .expect("a certificate naming a caller");
    assert_error(
        issue(Some(client_cert(&ca, dns("stranger.test"))), None).await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    // A bearer key, when sent, decides, even next to a good certificate.
    let (unknown_key, _) = new_bearer_key().expect("random key");
    assert_error(
        issue(Some(client_cert(&ca, uri(LOGIN_ID))), Some(unknown_key)).await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    // A certificate, when presented, must still chain to the client CA.
    let foreign = issue(
        Some(client_cert(&other_ca, uri(LOGIN_ID))),
        Some(service.key.clone()),
    )
    .await;
    assert!(foreign.is_err(), "certificate from another CA: {foreign:?}");
}

/// `curl` over HTTPS trusting `ca_file`, with `cert` presented if given:
/// the status (0 when no HTTP answer came: a refused handshake) and body.
async fn curl(
    dir: &std::path::Path,
    url: &str,
    cert: Option<&Cert>,
    form: Option<&str>,
) -> (u16, String) {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(dir.join("client-ca.pem"));
    if let Some(pem) = cert {
        let (cert_file, key_file) = (dir.join("curl.pem"), dir.join("curl.key"));
        std::fs::write(&cert_file, &pem.pem).expect("write");
        std::fs::write(&key_file, &pem.key).expect("write");
        command
            .arg("--cert")
            .arg(cert_file)
            .arg("--key")
            .arg(key_file);
    }
    if let Some(form) = form {
        command.args(["--data", form]);
    }
    let output = command.arg(url).output().await.expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// `http.tls`: the HTTP listener serves HTTPS with the gRPC port's
/// certificate, off loopback too, and a client certificate names its
/// caller there as on gRPC; probes need none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_over_tls_identifies_callers_by_certificate() {
    const INTROSPECTOR_ID: &str = "spiffe://test/ns/prod/sa/introspector";
    let ca = new_ca("test CA");
    let other_ca = new_ca("other CA");
    let issuer = TestCaller::new("issuer", &[Permission::Issue], &["*"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let files = ServerFiles::write(&ca, &dir);
    let callers = vec![
        issuer.config.clone(),
        certificate_caller("introspector", INTROSPECTOR_ID, &[Permission::Introspect]),
    ];
    // Not on loopback: over TLS the endpoints for callers are served anyway.
    let http_at = SocketAddr::from(([0, 0, 0, 0], crate::processes::free_port()));
    let server = TestServer::start_with_http_at(Backend::Sqlite, http_at, |config| {
        files.configure(config, ClientAuth::Optional);
        config.http.tls = true;
        config.auth.callers = callers;
    })
    .await;
    let tokens = issue_over(connect(server.addr, &ca, None).await, Some(&issuer.key))
        .await
        .expect("issue")
        .tokens
        .expect("tokens");
    let base = format!("https://127.0.0.1:{}", http_at.port());
    let introspect = format!("{base}/oauth2/introspect");
    let form = format!("token={}", tokens.access_token);

    let (status, body) = curl(dir.path(), &format!("{base}/readyz"), None, None).await;
    assert_eq!(status, 200, "{body}");
    let introspector = client_cert(&ca, uri(INTROSPECTOR_ID));
    let (status, body) = curl(dir.path(), &introspect, Some(&introspector), Some(&form)).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], "alice");

    let (status, body) = curl(dir.path(), &introspect, None, Some(&form)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("CREDENTIALS_MISSING"), "{body}");
    let stranger = client_cert(&ca, dns("stranger.test"));
    let (status, body) = curl(dir.path(), &introspect, Some(&stranger), Some(&form)).await;
    assert_eq!(status, 401, "{body}");
    // A certificate of another CA is refused in the handshake.
    let foreign = client_cert(&other_ca, uri(INTROSPECTOR_ID));
    let (status, _) = curl(dir.path(), &introspect, Some(&foreign), Some(&form)).await;
    assert_eq!(status, 0, "a certificate of another CA got an HTTP answer");
    // Plain HTTP gets no answer from the TLS listener.
    let plain = http_get_result(
        SocketAddr::from(([127, 0, 0, 1], http_at.port())),
        "/readyz",
    )
    .await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
}

/// What a plain-HTTP GET reads back (empty when the peer hangs up).
async fn http_get_result(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}
