//! Access tokens whose signature and issuer already checked out, so that the
//! common case (the same token on every request of a session) costs a
//! SHA-256 instead of a signature verification. Only what never changes for
//! a token is cached; expiry, audience, tenant and revocation are checked on
//! every call by the caller.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::access_token::Verified;
use super::refresh_token::{digest_of, TokenDigest};

pub struct VerifiedTokens {
    entries: RwLock<HashMap<TokenDigest, Arc<Verified>>>,
    capacity: usize,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The key of a token: its SHA-256, so that no other string can collide
    /// with a cached token.
    pub fn key(token: &str) -> TokenDigest {
        digest_of(token)
    }

    pub fn get(&self, key: &TokenDigest) -> Option<Arc<Verified>> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Remembers a verified token. When full, tokens expired by `now_secs`
    /// are dropped first, and if that frees nothing, everything is.
    pub fn insert(&self, key: TokenDigest, verified: Arc<Verified>, now_secs: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, v| v.claims.exp > now_secs);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, verified);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access_token::AccessClaims;

    fn verified(exp: i64) -> Arc<Verified> {
        Arc::new(Verified {
            claims: AccessClaims {
                iss: "i".into(),
                sub: "s".into(),
                aud: "a".into(),
                exp,
                iat: 0,
                nbf: 0,
                jti: "j".into(),
                sid: "x".into(),
                tenant: "t".into(),
                scope: String::new(),
                extra: Default::default(),
            },
            kid: "k".into(),
        })
    }

    #[test]
    fn full_cache_drops_expired_entries_first() {
        let cache = VerifiedTokens::new(2);
        let (a, b, c) = (
            VerifiedTokens::key("a"),
            VerifiedTokens::key("b"),
            VerifiedTokens::key("c"),
        );
        cache.insert(a, verified(100), 0);
        cache.insert(b, verified(300), 0);
        cache.insert(c, verified(300), 200);
        assert!(cache.get(&a).is_none(), "expired entry evicted");
        assert!(cache.get(&b).is_some());
        assert!(cache.get(&c).is_some());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = VerifiedTokens::new(0);
        let a = VerifiedTokens::key("a");
        cache.insert(a, verified(100), 0);
        assert!(cache.get(&a).is_none());
    }
}
