//! The HTTP listener's TLS (`http.tls`): the gRPC port's certificate and
//! key, and client certificates verified against `tls.client_ca_file` when
//! one is presented. Never required at the handshake: probes, Prometheus
//! and JWKS fetchers have none, and callers may send a key instead; the
//! endpoints that need a caller ask for one.
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::tls::TlsConfig;

pub fn server_config(tls: &TlsConfig) -> io::Result<Arc<ServerConfig>> {
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Err(invalid(
            "http.tls needs tls.cert_file and tls.key_file".into(),
        ));
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert_file, e))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| pem_error(key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS versions: {e}")))?;
    let builder = match &tls.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(ca_file).map_err(|e| pem_error(ca_file, e))? {
                roots
                    .add(ca.map_err(|e| pem_error(ca_file, e))?)
                    .map_err(|e| invalid(format!("{}: {e}", ca_file.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| invalid(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("TLS certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> io::Error {
    invalid(format!("reading {}: {error}", path.display()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
