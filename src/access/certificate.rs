//! A caller's identities from its (already verified) client certificate.
use x509_parser::extensions::GeneralName;

/// One subject alternative name. URIs (e.g. SPIFFE ids) and DNS names are
/// kept apart, so that neither kind can pass for the other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SanIdentity {
    /// Compared case-insensitively (stored lowercase).
    Dns(String),
    Uri(String),
}

impl SanIdentity {
    /// An identity as written in `[[auth.callers]] identities`: a URI
    /// (`scheme://…`), or else a DNS name.
    pub fn configured(text: &str) -> Self {
        if text.contains("://") {
            SanIdentity::Uri(text.to_owned())
        } else {
            SanIdentity::Dns(text.to_ascii_lowercase())
        }
    }
}

/// The DNS names and URIs in the certificate's subject alternative names.
/// Empty if it has none or does not parse.
pub fn identities(der: &[u8]) -> Vec<SanIdentity> {
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
            GeneralName::DNSName(dns) => Some(SanIdentity::Dns(dns.to_ascii_lowercase())),
            GeneralName::URI(uri) => Some(SanIdentity::Uri((*uri).to_owned())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_dns_names_never_match_each_other() {
        assert_eq!(
            SanIdentity::configured("spiffe://corp/sa/login"),
            SanIdentity::Uri("spiffe://corp/sa/login".into())
        );
        assert_eq!(
            SanIdentity::configured("Gateway.Internal"),
            SanIdentity::Dns("gateway.internal".into())
        );
        assert_ne!(
            SanIdentity::Dns("spiffe://corp/sa/login".into()),
            SanIdentity::configured("spiffe://corp/sa/login")
        );
    }
}
