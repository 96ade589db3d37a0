//! Certificates for the TLS tests, generated per test with rcgen: a CA,
//! leaf certificates, a server's PEM files, and clients that present one.
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use token_authority::access::config::CallerConfig;
use token_authority::access::Permission;
use token_authority::config::tls::ClientAuth;
use token_authority::verify::binding::thumbprint_of_der;

pub type Ca = CertifiedIssuer<'static, KeyPair>;

/// A certificate: PEM, its private key (PEM) and DER.
pub struct Cert {
    pub pem: String,
    pub key: String,
    pub der: Vec<u8>,
}

impl Cert {
    /// x5t#S256 (RFC 8705 §3.1).
    pub fn thumbprint(&self) -> String {
        thumbprint_of_der(&self.der)
    }

    /// As Envoy sends it in `source.certificate`.
    pub fn url_encoded_pem(&self) -> String {
        percent_encoding::utf8_percent_encode(&self.pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
    }

    /// As a gateway sends it in an RFC 9440 `Client-Cert` header.
    pub fn rfc9440(&self) -> String {
        format!(":{}:", STANDARD.encode(&self.der))
    }
}

pub fn new_ca(name: &str) -> Ca {
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

pub fn leaf(ca: &Ca, san: SanType, usage: ExtendedKeyUsagePurpose) -> Cert {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![san];
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("leaf certificate");
    Cert {
        pem: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

pub fn client_cert(ca: &Ca, san: SanType) -> Cert {
    leaf(ca, san, ExtendedKeyUsagePurpose::ClientAuth)
}

pub fn uri(value: &str) -> SanType {
    SanType::URI(value.try_into().expect("IA5 string"))
}

pub fn dns(value: &str) -> SanType {
    SanType::DnsName(value.try_into().expect("IA5 string"))
}

/// A caller recognised only by a certificate SAN, for every tenant.
pub fn certificate_caller(name: &str, identity: &str, permissions: &[Permission]) -> CallerConfig {
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

/// PEM files of a server certificate for 127.0.0.1 from `ca`, and of `ca`
/// as the client CA (`client-ca.pem`).
pub struct ServerFiles {
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
    client_ca_file: std::path::PathBuf,
}

impl ServerFiles {
    pub fn write(ca: &Ca, dir: &TempDir) -> Self {
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
        Self {
            cert_file: write("server.pem", &server_cert.pem),
            key_file: write("server.key", &server_cert.key),
            client_ca_file: write("client-ca.pem", &ca.pem()),
        }
    }

    pub fn configure(&self, config: &mut token_authority::config::Config, client_auth: ClientAuth) {
        config.tls.cert_file = Some(self.cert_file.clone());
        config.tls.key_file = Some(self.key_file.clone());
        config.tls.client_ca_file = Some(self.client_ca_file.clone());
        config.tls.client_auth = client_auth;
    }
}

/// Connects over TLS, trusting `ca`, presenting `identity` if given.
pub async fn connect(
    addr: SocketAddr,
    ca: &Ca,
    identity: Option<&Cert>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem()));
    if let Some(cert) = identity {
        tls = tls.identity(Identity::from_pem(&cert.pem, &cert.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}
