//! Validation of access tokens from memory: the verifying keys, the
//! sessions revoked recently enough to matter, and a cache of tokens whose
//! signature already checked out. The authority keeps one in step with the
//! database; a sidecar keeps one in step with the authority.
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::access_token::{self, AccessClaims};
use super::binding;
use super::caller::Caller;
use super::error::{Error, Result};
use super::input;
use super::keys::VerifyingKeys;
use super::model::{ValidateRequest, ValidatedToken};
use super::revocation_feed::RevocationFeed;
use super::revocations::RevokedSessions;
pub use super::verified_tokens::CacheStats;
use super::verified_tokens::{VerifiedToken, VerifiedTokens};
use crate::clock::Millis;

pub struct Validator {
    issuer: String,
    /// Allowed clock disagreement on `exp`/`nbf`/`iat`, in ms.
    leeway: Millis,
    /// Also names the withdrawn keys: never verified with again, whatever
    /// key set arrives later (a lagging replica's snapshot may still list one).
    keys: RwLock<Arc<VerifyingKeys>>,
    revoked: RevokedSessions,
    verified: VerifiedTokens,
    feed: RevocationFeed,
    /// Tenants whose tokens must be certificate-bound.
    binding_required: BTreeSet<String>,
}

impl Validator {
    pub fn new(issuer: String, cache_capacity: usize, leeway: Millis) -> Self {
        Self {
            issuer,
            leeway,
            keys: RwLock::new(Arc::new(VerifyingKeys::default())),
            revoked: RevokedSessions::default(),
            verified: VerifiedTokens::new(cache_capacity),
            feed: RevocationFeed::default(),
            binding_required: BTreeSet::new(),
        }
    }

    /// Refuses bearer (unbound) tokens of these tenants.
    pub fn with_binding_required(mut self, tenants: impl IntoIterator<Item = String>) -> Self {
        self.binding_required = tenants.into_iter().collect();
        self
    }

    /// Signature, type, issuer, lifetime, the caller's tenants, the expected
    /// audience and tenant, and revocation of the session.
    pub fn validate(
        &self,
        caller: &Caller,
        req: &ValidateRequest,
        now: Millis,
    ) -> Result<ValidatedToken> {
        input::token("access_token", &req.access_token, input::MAX_ACCESS_TOKEN)?;
        input::optional_text(
            "expected_audience",
            &req.expected_audience,
            input::MAX_AUDIENCE,
        )?;
        input::optional_text(
            "expected_tenant_id",
            &req.expected_tenant_id,
            input::MAX_TENANT_ID,
        )?;
        if !req.presenter_certificate_thumbprint.is_empty() {
            binding::check_thumbprint(
                "presenter_certificate_thumbprint",
                &req.presenter_certificate_thumbprint,
            )?;
        }
        let key = VerifiedTokens::key(&req.access_token);
        let verified = match self.verified.get(&key) {
            Some(hit) => {
                if let Err(e) = access_token::check_lifetime(&hit.claims, now, self.leeway) {
                    if matches!(e, Error::TokenExpired) {
                        self.verified.remove(&key);
                    }
                    return Err(e);
                }
                hit
            }
            None => {
                let keys = self.keys();
                let checked =
                    access_token::verify(&keys, &self.issuer, &req.access_token, now, self.leeway)?;
                let session =
                    Uuid::try_parse(&checked.claims.sid).map_err(|_| Error::TokenInvalid)?;
                let fresh = Arc::new(VerifiedToken {
                    claims: checked.claims,
                    kid: checked.kid,
                    session,
                });
                // A revoked session's token is never cached, so that the
                // cache only ever holds tokens that were valid when added;
                // nor one verified with a key set replaced meanwhile (its
                // key may be gone, and the replacement cleared the cache).
                if !self.revoked.contains(&session) && Arc::ptr_eq(&keys, &self.keys()) {
                    self.verified.insert(key, fresh.clone());
                }
                fresh
            }
        };
        let claims = &verified.claims;
        caller.check_tenant(&claims.tenant)?;
        if !req.expected_tenant_id.is_empty() && claims.tenant != req.expected_tenant_id {
            return Err(Error::TenantMismatch);
        }
        if !req.expected_audience.is_empty() && claims.aud != req.expected_audience {
            return Err(Error::AudienceMismatch);
        }
        // This check, on every call, is what keeps a revoked session's token
        // from validating, cached or not: `revoke` does not hunt the cache
        // for the session's tokens (that was a scan of the whole cache under
        // its lock). An entry found revoked here goes; so does one inserted
        // above by a verification that raced the revocation. The tokens of a
        // revoked session that nobody presents again age out of the cache;
        // the revocation outlives them (`prune` keeps it until they expired,
        // leeway included), as it must for uncached tokens anyway.
        if self.revoked.contains(&verified.session) {
            self.verified.remove(&key);
            return Err(Error::SessionRevoked);
        }
        self.check_binding(claims, req)?;
        Ok(ValidatedToken {
            claims: claims.clone(),
            key_id: verified.kid.clone(),
        })
    }

    /// A bound token only for the presenter of its certificate; a bearer
    /// token only outside the tenants that require binding.
    fn check_binding(&self, claims: &AccessClaims, req: &ValidateRequest) -> Result<()> {
        if claims.cnf.is_none() && self.binding_required.contains(&claims.tenant) {
            return Err(Error::UnboundToken);
        }
        let presented = &req.presenter_certificate_thumbprint;
        if req.binding_checked_by_caller && presented.is_empty() {
            return Ok(());
        }
        binding::check_presenter(claims.cnf.as_ref(), presented)
    }

    /// Whether tokens of `tenant` must be certificate-bound.
    pub fn binding_required(&self, tenant: &str) -> bool {
        self.binding_required.contains(tenant)
    }

    pub fn keys(&self) -> Arc<VerifyingKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the verifying keys, less any withdrawn one. If a key went
    /// away, cached tokens it signed must not validate any more: the cache
    /// starts over.
    pub fn set_keys(&self, keys: Arc<VerifyingKeys>) {
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let keys = if current.withdrawn().is_subset(keys.withdrawn()) {
            keys
        } else {
            let withdrawn = current
                .withdrawn()
                .union(keys.withdrawn())
                .cloned()
                .collect();
            Arc::new(VerifyingKeys::without(
                keys.public_keys().to_vec(),
                &withdrawn,
            ))
        };
        if !keys.contains_all_of(&current) {
            self.verified.clear();
        }
        let changed = keys.public_keys() != current.public_keys();
        *current = keys;
        drop(current);
        if changed {
            self.feed.keys_changed();
        }
    }

    /// Stops verifying with these keys at once, for good, and tells
    /// watchers. Returns the kids that were not withdrawn already.
    pub fn withdraw_keys(&self, kids: &[String]) -> Vec<String> {
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut withdrawn = current.withdrawn().clone();
        let new: Vec<String> = kids
            .iter()
            .filter(|kid| withdrawn.insert((*kid).clone()))
            .cloned()
            .collect();
        if new.is_empty() {
            return new;
        }
        *current = Arc::new(VerifyingKeys::without(
            current.public_keys().to_vec(),
            &withdrawn,
        ));
        // Tokens of a withdrawn key may be cached; the cache starts over.
        self.verified.clear();
        drop(current);
        self.feed.keys_withdrawn(&new);
        new
    }

    /// Every key withdrawn since this validator started, sorted.
    pub fn withdrawn_keys(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys().withdrawn().iter().cloned().collect();
        kids.sort();
        kids
    }

    /// Records revoked sessions, each relevant until the given time (after
    /// which none of its access tokens can be alive). Returns those that
    /// were not known, or known with an earlier deadline.
    pub fn revoke(&self, sessions: &[(Uuid, Millis)]) -> Vec<(Uuid, Millis)> {
        let changed: Vec<_> = sessions
            .iter()
            .copied()
            .filter(|(id, until)| self.revoked.insert(*id, *until))
            .collect();
        self.feed.revoked(&changed);
        changed
    }

    /// Allowed clock disagreement on `exp`/`nbf`/`iat`, in ms.
    pub fn leeway(&self) -> Millis {
        self.leeway
    }

    pub fn is_revoked(&self, session: &Uuid) -> bool {
        self.revoked.contains(session)
    }

    /// What WatchRevocations streams.
    pub fn feed(&self) -> &RevocationFeed {
        &self.feed
    }

    pub fn revoked_sessions(&self) -> &RevokedSessions {
        &self.revoked
    }

    /// Forgets revocations that no longer matter at `now`.
    pub fn prune(&self, now: Millis) -> usize {
        self.feed.prune(now);
        self.revoked.prune(now)
    }

    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    /// Hits and misses of the verified-token cache since start.
    pub fn cache_stats(&self) -> CacheStats {
        self.verified.stats()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::access_token::{sign, AccessClaims};
    use crate::keys::{ephemeral, KeyAlgorithm};
    use crate::Error;

    /// A small deterministic generator, so that a failure replays exactly.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// A withdrawn key is refused by name, cached tokens included, and a
    /// key set that still lists it (a lagging upstream) does not bring it back.
    #[test]
    fn a_withdrawn_key_stays_withdrawn_whatever_key_set_comes_next() {
        let (signer, keys) = ephemeral(KeyAlgorithm::EdDsa).unwrap();
        let public = keys.public_keys().to_vec();
        let validator = Validator::new("iss".into(), 8, 0);
        validator.set_keys(Arc::new(keys));
        let now: Millis = 1_700_000_000_000;
        let claims = AccessClaims {
            iss: "iss".into(),
            sub: "alice".into(),
            aud: "api".into(),
            exp: now / 1000 + 60,
            iat: now / 1000,
            nbf: now / 1000,
            jti: "j".into(),
            sid: Uuid::now_v7().to_string(),
            tenant: "acme".into(),
            scope: String::new(),
            client_id: "c".into(),
            act: None,
            cnf: None,
            extra: Default::default(),
        };
        let token = sign(&signer, &claims).unwrap();
        let request = ValidateRequest {
            access_token: token,
            ..Default::default()
        };
        let caller = Caller::anonymous();
        validator.validate(&caller, &request, now).unwrap();
        assert_eq!(validator.cached_tokens(), 1);
        let kid = signer.kid.clone();
        let withdrawn = std::slice::from_ref(&kid);
        assert_eq!(validator.withdraw_keys(withdrawn), withdrawn);
        assert!(validator.withdraw_keys(withdrawn).is_empty());
        assert!(matches!(
            validator.validate(&caller, &request, now),
            Err(Error::KeyWithdrawn)
        ));
        validator.set_keys(Arc::new(VerifyingKeys::new(public)));
        assert!(validator.keys().public_keys().is_empty());
        assert!(matches!(
            validator.validate(&caller, &request, now),
            Err(Error::KeyWithdrawn)
        ));
        assert_eq!(validator.withdrawn_keys(), [kid]);
    }

    /// Whatever the interleaving of validations (cache hits and misses),
    /// revocations, passing time and cache evictions, the validator answers
    /// exactly what a model without a cache answers: a token is valid iff
    /// its session is not revoked and it has not expired.
    #[test]
    fn the_cache_never_returns_a_revoked_or_expired_token_as_valid() {
        let (signer, keys) = ephemeral(KeyAlgorithm::EdDsa).unwrap();
        let mut now: Millis = 1_700_000_000_000;
        // A tiny cache, so that evictions happen all the time.
        let validator = Validator::new("iss".into(), 8, 0);
        validator.set_keys(Arc::new(keys));
        let mut rng = Lcg(42);
        let mut tokens = Vec::new();
        for i in 0..100 {
            let session = Uuid::now_v7();
            let exp = now / 1000 + 60 + i64::try_from(rng.below(900)).unwrap();
            let claims = AccessClaims {
                iss: "iss".into(),
                sub: format!("user-{i}"),
                aud: "api".into(),
                exp,
                iat: now / 1000,
                nbf: now / 1000,
                jti: i.to_string(),
                sid: session.to_string(),
                tenant: "acme".into(),
                scope: String::new(),
                client_id: "c".into(),
                act: None,
                cnf: None,
                extra: Default::default(),
            };
            tokens.push((sign(&signer, &claims).unwrap(), session, exp));
        }
        let mut revoked = HashSet::new();
        let caller = Caller::anonymous();
        let mut valid_answers = 0;
        for _ in 0..10_000 {
            match rng.below(200) {
                0 => {
                    let (_, session, _) = &tokens[rng.below(100) as usize];
                    validator.revoke(&[(*session, now + 3_600_000)]);
                    revoked.insert(*session);
                }
                1..=10 => now += i64::try_from(rng.below(2_000)).unwrap(),
                _ => {
                    let (token, session, exp) = &tokens[rng.below(100) as usize];
                    let request = ValidateRequest {
                        access_token: token.clone(),
                        ..Default::default()
                    };
                    let answer = validator.validate(&caller, &request, now);
                    let expired = now / 1000 >= *exp;
                    match (answer, expired, revoked.contains(session)) {
                        (Ok(_), false, false) => valid_answers += 1,
                        (Err(Error::TokenExpired), true, _) => {}
                        (Err(Error::SessionRevoked), false, true) => {}
                        (answer, expired, revoked) => panic!(
                            "validator said {answer:?} for expired={expired} revoked={revoked}"
                        ),
                    }
                }
            }
        }
        assert!(
            valid_answers > 2000,
            "the run exercised valid tokens: {valid_answers}"
        );
        assert!(!revoked.is_empty());
        assert!(validator.cached_tokens() <= 8);
    }

    /// `revoke` leaves the cache alone; the first validation that finds a
    /// token revoked (or expired) drops its entry.
    #[test]
    fn a_cached_token_found_revoked_or_expired_is_dropped() {
        let (signer, keys) = ephemeral(KeyAlgorithm::EdDsa).unwrap();
        let now: Millis = 1_700_000_000_000;
        let validator = Validator::new("iss".into(), 8, 0);
        validator.set_keys(Arc::new(keys));
        let token = |jti: &str, session: Uuid| {
            let claims = AccessClaims {
                iss: "iss".into(),
                sub: "user".into(),
                aud: "api".into(),
                exp: now / 1000 + 60,
                iat: now / 1000,
                nbf: now / 1000,
                jti: jti.into(),
                sid: session.to_string(),
                tenant: "acme".into(),
                scope: String::new(),
                client_id: "c".into(),
                act: None,
                cnf: None,
                extra: Default::default(),
            };
            ValidateRequest {
                access_token: sign(&signer, &claims).unwrap(),
                ..Default::default()
            }
        };
        let caller = Caller::anonymous();
        let (revoked, expiring) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b) = (token("a", revoked), token("b", expiring));
        validator.validate(&caller, &a, now).unwrap();
        validator.validate(&caller, &b, now).unwrap();
        assert_eq!(validator.cached_tokens(), 2);

        validator.revoke(&[(revoked, now + 3_600_000)]);
        assert_eq!(validator.cached_tokens(), 2, "revoke scans nothing");
        let hits = validator.cache_stats().hits;
        let answer = validator.validate(&caller, &a, now);
        assert!(matches!(answer, Err(Error::SessionRevoked)), "{answer:?}");
        assert_eq!(
            validator.cache_stats().hits,
            hits + 1,
            "answered from the cache"
        );
        assert_eq!(validator.cached_tokens(), 1);
        let answer = validator.validate(&caller, &a, now);
        assert!(matches!(answer, Err(Error::SessionRevoked)), "{answer:?}");
        assert_eq!(
            validator.cached_tokens(),
            1,
            "a revoked token is not cached again"
        );

        let answer = validator.validate(&caller, &b, now + 61_000);
        assert!(matches!(answer, Err(Error::TokenExpired)), "{answer:?}");
        assert_eq!(validator.cached_tokens(), 0);
    }
}
