//! Access tokens whose signature and issuer already checked out, so that the
//! common case (the same token on every request of a session) costs a
//! SHA-256 instead of a signature verification. Only what never changes for
//! a token is cached; expiry, audience, tenant and revocation are checked on
//! every call by the validator. Entries of a revoked session are dropped.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::access_token::AccessClaims;
use crate::digest::{digest_of, TokenDigest};

/// A token that verified, with its session id parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub claims: AccessClaims,
    pub kid: String,
    pub session: Uuid,
}

pub struct VerifiedTokens {
    entries: RwLock<HashMap<TokenDigest, Arc<VerifiedToken>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Lookups since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The key of a token: its SHA-256, so that no other string can collide
    /// with a cached token.
    pub fn key(token: &str) -> TokenDigest {
        digest_of(token)
    }

    pub fn get(&self, key: &TokenDigest) -> Option<Arc<VerifiedToken>> {
        let found = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remembers a verified token. When full, expired tokens go first; if
    /// that frees nothing, about an eighth of the entries (arbitrary ones:
    /// the map's order is random) make room.
    pub fn insert(&self, key: TokenDigest, verified: Arc<VerifiedToken>, now_secs: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, v| v.claims.exp > now_secs);
            let mut n = 0usize;
            while entries.len() >= self.capacity {
                entries.retain(|_, _| {
                    n += 1;
                    !n.is_multiple_of(8)
                });
            }
        }
        entries.insert(key, verified);
    }

    /// Drops every cached token of these sessions.
    pub fn drop_sessions(&self, sessions: &HashSet<Uuid>) {
        if sessions.is_empty() {
            return;
        }
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| !sessions.contains(&v.session));
    }

    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(exp: i64, session: Uuid) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            claims: AccessClaims {
                iss: "i".into(),
                sub: "s".into(),
                aud: "a".into(),
                exp,
                iat: 0,
                nbf: 0,
                jti: "j".into(),
                sid: session.to_string(),
                tenant: "t".into(),
                scope: String::new(),
                extra: Default::default(),
            },
            kid: "k".into(),
            session,
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
        cache.insert(a, verified(100, Uuid::now_v7()), 0);
        cache.insert(b, verified(300, Uuid::now_v7()), 0);
        cache.insert(c, verified(300, Uuid::now_v7()), 200);
        assert!(cache.get(&a).is_none(), "expired entry evicted");
        assert!(cache.get(&b).is_some());
        assert!(cache.get(&c).is_some());
    }

    #[test]
    fn full_cache_of_live_tokens_stays_bounded() {
        let cache = VerifiedTokens::new(100);
        for i in 0..1000 {
            let key = VerifiedTokens::key(&i.to_string());
            cache.insert(key, verified(300, Uuid::now_v7()), 0);
            assert!(cache.len() <= 100);
            assert!(cache.get(&key).is_some(), "the newest entry is kept");
        }
        assert!(cache.len() > 80, "evicts an eighth, not everything");
    }

    #[test]
    fn revoked_sessions_are_dropped() {
        let cache = VerifiedTokens::new(10);
        let (s1, s2) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b) = (VerifiedTokens::key("a"), VerifiedTokens::key("b"));
        cache.insert(a, verified(300, s1), 0);
        cache.insert(b, verified(300, s2), 0);
        cache.drop_sessions(&HashSet::from([s1]));
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = VerifiedTokens::new(0);
        let a = VerifiedTokens::key("a");
        cache.insert(a, verified(100, Uuid::now_v7()), 0);
        assert!(cache.get(&a).is_none());
    }
}
