use serde::{Deserialize, Serialize};

/// What a caller may be granted: one per RPC, or everything (`"*"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    Issue,
    Refresh,
    Revoke,
    ListSessions,
    Validate,
    /// Token exchange; which audiences is the caller's `exchange` table.
    Exchange,
    GetJwks,
    WatchRevocations,
    /// Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`),
    /// and its HTTP twin for gateways, `GET /authz`.
    Check,
    /// RFC 7662 token introspection, `POST /oauth2/introspect` (`Validate`
    /// grants it too: it is the same decision).
    Introspect,
    RotateSigningKey,
    /// `Admin/WithdrawSigningKey`: after a key compromise.
    WithdrawSigningKey,
    ListSigningKeys,
    /// `Admin/ListAuditEvents`: the audit trail of the caller's tenants.
    ReadAudit,
    #[serde(rename = "*")]
    All,
}

impl Permission {
    /// RPCs whose effect or answer covers every tenant: the revocation
    /// stream (every tenant's revoked sessions) and signing keys (shared by
    /// all tenants). `*` includes them.
    pub fn spans_tenants(self) -> bool {
        matches!(
            self,
            Permission::WatchRevocations
                | Permission::RotateSigningKey
                | Permission::WithdrawSigningKey
                | Permission::ListSigningKeys
                | Permission::All
        )
    }
}

/// What a gRPC method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// Health checks and reflection: open to anyone who can connect (they
    /// carry no data; load balancers and grpcurl need them).
    Open,
    Permission(Permission),
    /// Not one of ours: authenticated callers get gRPC's UNIMPLEMENTED.
    Unknown,
}

/// In [`METHODS`]: every method of the service.
const ANY_METHOD: &str = "*";

/// Every gRPC method we serve, and what it needs: `(service, method,
/// required)`. A new RPC is one line here. The test
/// `table_matches_the_served_descriptors` fails when a method of a served
/// service is missing, or when a line names a method that does not exist.
const METHODS: &[(&str, &str, Required)] = {
    use Permission::*;
    const HEALTH: &str = "grpc.health.v1.Health";
    const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
    const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";
    const TOKEN_AUTHORITY: &str = "token_authority.v1.TokenAuthority";
    const ADMIN: &str = "token_authority.v1.Admin";
    const ENVOY_AUTHZ: &str = "envoy.service.auth.v3.Authorization";
    &[
        (HEALTH, ANY_METHOD, Required::Open),
        (REFLECTION_V1, ANY_METHOD, Required::Open),
        (REFLECTION_V1ALPHA, ANY_METHOD, Required::Open),
        (TOKEN_AUTHORITY, "Issue", needs(Issue)),
        (TOKEN_AUTHORITY, "Refresh", needs(Refresh)),
        (TOKEN_AUTHORITY, "Revoke", needs(Revoke)),
        (TOKEN_AUTHORITY, "ListSessions", needs(ListSessions)),
        (TOKEN_AUTHORITY, "Validate", needs(Validate)),
        (TOKEN_AUTHORITY, "Exchange", needs(Exchange)),
        (TOKEN_AUTHORITY, "GetJwks", needs(GetJwks)),
        (TOKEN_AUTHORITY, "WatchRevocations", needs(WatchRevocations)),
        (ADMIN, "RotateSigningKey", needs(RotateSigningKey)),
        (ADMIN, "WithdrawSigningKey", needs(WithdrawSigningKey)),
        (ADMIN, "ListSigningKeys", needs(ListSigningKeys)),
        (ADMIN, "ListAuditEvents", needs(ReadAudit)),
        (ENVOY_AUTHZ, "Check", needs(Check)),
    ]
};

const fn needs(permission: Permission) -> Required {
    Required::Permission(permission)
}

impl Required {
    /// From an HTTP/2 path, `/package.Service/Method`, by [`METHODS`].
    pub fn for_path(path: &str) -> Required {
        let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
            return Required::Unknown;
        };
        METHODS
            .iter()
            .find(|&&(s, m, _)| s == service && (m == method || m == ANY_METHOD))
            .map_or(Required::Unknown, |&(_, _, required)| required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_types::FileDescriptorSet;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn paths_map_to_permissions() {
        assert_eq!(
            Required::for_path("/token_authority.v1.TokenAuthority/Issue"),
            Required::Permission(Permission::Issue)
        );
        assert_eq!(
            Required::for_path("/envoy.service.auth.v3.Authorization/Check"),
            Required::Permission(Permission::Check)
        );
        assert_eq!(
            Required::for_path("/grpc.health.v1.Health/Check"),
            Required::Open
        );
        assert_eq!(
            Required::for_path("/token_authority.v1.TokenAuthority/Nope"),
            Required::Unknown
        );
        assert_eq!(Required::for_path("garbage"), Required::Unknown);
    }

    /// The services the server registers: their names as generated from
    /// the protos, so that a service renamed in a proto shows up here.
    const SERVED: &[&str] = &[
        crate::proto::token_authority_server::SERVICE_NAME,
        crate::proto::admin_server::SERVICE_NAME,
        envoy_types::pb::envoy::service::auth::v3::authorization_server::SERVICE_NAME,
        tonic_health::pb::health_server::SERVICE_NAME,
        tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
        tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
    ];

    /// Every service in the descriptor sets the server embeds for
    /// reflection (`crate::proto`, and those of tonic-health and
    /// tonic-reflection), with its method names.
    fn described_services() -> BTreeMap<String, BTreeSet<String>> {
        let sets = [
            crate::proto::FILE_DESCRIPTOR_SET,
            crate::proto::ENVOY_AUTHZ_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut services = BTreeMap::new();
        for set in sets {
            let set = FileDescriptorSet::decode(set).expect("embedded descriptor set decodes");
            for file in set.file {
                for service in &file.service {
                    let name = format!("{}.{}", file.package(), service.name());
                    let methods = service.method.iter().map(|m| m.name().to_owned());
                    services
                        .entry(name)
                        .or_insert_with(BTreeSet::new)
                        .extend(methods);
                }
            }
        }
        services
    }

    /// A new RPC (or service) is a line in `METHODS`: this fails until it is
    /// there, and when a line names a method the protos no longer have.
    #[test]
    fn table_matches_the_served_descriptors() {
        let described = described_services();
        let mut problems = Vec::new();

        let served: BTreeSet<&str> = SERVED.iter().copied().collect();
        for service in described.keys() {
            if !served.contains(service.as_str()) {
                problems.push(format!(
                    "{service} is in the descriptors but not in SERVED (serve it, or drop it)"
                ));
            }
        }
        for &service in &served {
            let Some(methods) = described.get(service) else {
                problems.push(format!("{service} is served but has no descriptor"));
                continue;
            };
            for method in methods {
                if Required::for_path(&format!("/{service}/{method}")) == Required::Unknown {
                    problems.push(format!(
                        "/{service}/{method} has no line in METHODS (maps to Required::Unknown)"
                    ));
                }
            }
        }

        let mut seen = BTreeSet::new();
        for &(service, method, required) in METHODS {
            if !seen.insert((service, method)) {
                problems.push(format!("METHODS names {service}/{method} twice"));
            }
            if required == Required::Unknown {
                problems.push(format!("METHODS maps {service}/{method} to Unknown"));
            }
            if method == ANY_METHOD && required != Required::Open {
                problems.push(format!(
                    "METHODS grants every method of {service} by one permission: name each"
                ));
            }
            match described.get(service) {
                None => problems.push(format!("METHODS names {service}, which is not described")),
                Some(methods) if method != ANY_METHOD && !methods.contains(method) => problems
                    .push(format!(
                        "METHODS names {service}/{method}, which the descriptors do not have"
                    )),
                Some(_) => {}
            }
            if !served.contains(service) {
                problems.push(format!("METHODS names {service}, which is not served"));
            }
        }

        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
