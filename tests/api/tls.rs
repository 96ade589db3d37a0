//! TLS on the gRPC port: callers recognised by their client certificate's
//! SANs, mutual TLS required or optional, certificates generated per test.
use std::net::SocketAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use crate::common::*;
use token_authority::access::config::CallerConfig;
use token_authority::access::{new_bearer_key, Permission};
use token_authority::config::tls::ClientAuth;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{self as pb};

const LOGIN_ID: &str = "spiffe://test/ns/prod/sa/login";
const GATEWAY_ID: &str = "gateway.test";

type Ca = CertifiedIssuer<'static, KeyPair>;

/// A certificate and its private key, PEM.
struct Pem {
    cert: String,
    key: String,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(ca: &Ca, san: SanType, usage: ExtendedKeyUsagePurpose) -> Pem {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![san];
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("leaf certificate");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn client_cert(ca: &Ca, san: SanType) -> Pem {
    leaf(ca, san, ExtendedKeyUsagePurpose::ClientAuth)
}

fn uri(value: &str) -> SanType {
    SanType::URI(value.try_into().expect("IA5 string"))
}

fn dns(value: &str) -> SanType {
    SanType::DnsName(value.try_into().expect("IA5 string"))
}

/// A caller recognised only by a certificate SAN.
fn certificate_caller(name: &str, identity: &str, permissions: &[Permission]) -> CallerConfig {
    CallerConfig {
        name: name.into(),
        key_sha256: Vec::new(),
        identities: vec![identity.into()],
        permissions: permissions.to_vec(),
        tenants: vec!["*".into()],
        rate: None,
        exchange: None,
    }
}

/// A server with a certificate for 127.0.0.1 from `ca`, which also signs
/// the client certificates it accepts. The returned dir holds the PEM files.
async fn start_tls_server(
    ca: &Ca,
    client_auth: ClientAuth,
    callers: Vec<CallerConfig>,
) -> (TestServer, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server_cert = leaf(
        ca,
        SanType::IpAddress("127.0.0.1".parse().expect("ip")),
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    let cert_file = write("server.pem", &server_cert.cert);
    let key_file = write("server.key", &server_cert.key);
    let client_ca_file = write("client-ca.pem", &ca.pem());
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.tls.cert_file = Some(cert_file);
        config.tls.key_file = Some(key_file);
        config.tls.client_ca_file = Some(client_ca_file);
        config.tls.client_auth = client_auth;
        config.auth.callers = callers;
    })
    .await;
    (server, dir)
}

/// Connects over TLS, trusting `ca`, presenting `identity` if given.
async fn connect(
    addr: SocketAddr,
    ca: &Ca,
    identity: Option<&Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem()));
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
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
    let issue = |identity: Option<Pem>, key: Option<String>| {
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
