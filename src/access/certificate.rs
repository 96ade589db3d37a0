//! A caller's identities from its (already verified) client certificate.
use x509_parser::extensions::GeneralName;

/// The DNS names and URIs (e.g. `spiffe://corp/ns/prod/sa/login`) in the
/// certificate's subject alternative names. Empty if it has none or does
/// not parse.
pub fn identities(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}
