//! Access tokens whose signature and issuer already checked out, so that the
//! common case (the same token on every request of a session) costs a
//! SHA-256 instead of a signature verification. Only what never changes for
//! a token is cached; expiry, audience, tenant and revocation are checked on
//! every call by the validator, which also drops an entry it finds expired
//! or revoked.
//!
//! The cache is `quick_cache`: sharded, S3-FIFO eviction (scan resistant),
//! no background threads. It has no per-entry expiry; none is needed for
//! correctness, since the validator checks `exp` on every hit.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;
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
    /// `None` when the capacity is 0: nothing is cached.
    entries: Option<Cache<TokenDigest, Arc<VerifiedToken>>>,
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
            entries: (capacity > 0).then(|| Cache::new(capacity)),
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
        let found = self.entries.as_ref().and_then(|c| c.get(key));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Remembers a verified token. When full, the cache evicts by its own
    /// policy (S3-FIFO: entries not looked up since they came in go first).
    pub fn insert(&self, key: TokenDigest, verified: Arc<VerifiedToken>) {
        if let Some(c) = &self.entries {
            c.insert(key, verified);
        }
    }

    /// Forgets one token: the validator calls it for an entry it found
    /// expired or revoked. Locks one shard, never the whole cache.
    pub fn remove(&self, key: &TokenDigest) {
        if let Some(c) = &self.entries {
            c.remove(key);
        }
    }

    pub fn clear(&self) {
        if let Some(c) = &self.entries {
            c.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
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
                client_id: "c".into(),
                act: None,
                cnf: None,
                extra: Default::default(),
            },
            kid: "k".into(),
            session,
        })
    }

    #[test]
    fn full_cache_of_live_tokens_stays_bounded() {
        let cache = VerifiedTokens::new(100);
        for i in 0..1000 {
            let key = VerifiedTokens::key(&i.to_string());
            cache.insert(key, verified(300, Uuid::now_v7()));
            assert!(cache.len() <= 100);
            assert!(cache.get(&key).is_some(), "the newest entry is kept");
        }
        assert!(cache.len() > 80, "evicts a few, not everything");
    }

    #[test]
    fn tokens_looked_up_again_survive_a_scan_of_new_ones() {
        let cache = VerifiedTokens::new(100);
        let hot: Vec<_> = (0..20)
            .map(|i| VerifiedTokens::key(&format!("hot-{i}")))
            .collect();
        for key in &hot {
            cache.insert(*key, verified(300, Uuid::now_v7()));
        }
        for i in 0..1000 {
            for key in &hot {
                assert!(cache.get(key).is_some(), "hot token {i} evicted");
            }
            let key = VerifiedTokens::key(&format!("cold-{i}"));
            cache.insert(key, verified(300, Uuid::now_v7()));
        }
    }

    #[test]
    fn removed_tokens_are_gone_and_others_stay() {
        let cache = VerifiedTokens::new(10);
        let (a, b) = (VerifiedTokens::key("a"), VerifiedTokens::key("b"));
        cache.insert(a, verified(300, Uuid::now_v7()));
        cache.insert(b, verified(300, Uuid::now_v7()));
        cache.remove(&a);
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.get(&b).is_none());
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 2 });
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = VerifiedTokens::new(0);
        let a = VerifiedTokens::key("a");
        cache.insert(a, verified(100, Uuid::now_v7()));
        assert!(cache.get(&a).is_none());
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.stats(), CacheStats { hits: 0, misses: 1 });
    }
}
