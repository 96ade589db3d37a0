use serde::{Deserialize, Serialize};

/// What a caller may be granted: one per RPC, or everything (`"*"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    Issue,
    Refresh,
    Revoke,
    ListSessions,
    Validate,
    GetJwks,
    WatchRevocations,
    /// Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`).
    Check,
    RotateSigningKey,
    ListSigningKeys,
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

impl Required {
    /// From an HTTP/2 path, `/package.Service/Method`.
    pub fn for_path(path: &str) -> Required {
        let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
            return Required::Unknown;
        };
        use Permission::*;
        let permission = match (service, method) {
            ("grpc.health.v1.Health", _)
            | ("grpc.reflection.v1.ServerReflection", _)
            | ("grpc.reflection.v1alpha.ServerReflection", _) => return Required::Open,
            ("token_authority.v1.TokenAuthority", "Issue") => Issue,
            ("token_authority.v1.TokenAuthority", "Refresh") => Refresh,
            ("token_authority.v1.TokenAuthority", "Revoke") => Revoke,
            ("token_authority.v1.TokenAuthority", "ListSessions") => ListSessions,
            ("token_authority.v1.TokenAuthority", "Validate") => Validate,
            ("token_authority.v1.TokenAuthority", "GetJwks") => GetJwks,
            ("token_authority.v1.TokenAuthority", "WatchRevocations") => WatchRevocations,
            ("token_authority.v1.Admin", "RotateSigningKey") => RotateSigningKey,
            ("token_authority.v1.Admin", "ListSigningKeys") => ListSigningKeys,
            ("envoy.service.auth.v3.Authorization", "Check") => Check,
            _ => return Required::Unknown,
        };
        Required::Permission(permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
