//! Sidecar mode: a local validator that holds a copy of the authority's key
//! set and revocations, kept in step by WatchRevocations, and serves
//! Validate and Envoy's Check with no call upstream per request. If the
//! authority is unreachable it keeps validating with what it has, for at
//! most `sidecar.max_staleness`; after that it fails closed (UNAVAILABLE).
mod run;
mod upstream;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use run::{run, serve, SidecarError};
pub use upstream::{Upstream, UpstreamError};

use crate::verify::caller::Caller;
use crate::verify::clock::{duration_millis, Millis, SharedClock};
use crate::verify::error::{Error, Result};
use crate::verify::keys::{PublicKey, VerifyingKeys};
use crate::verify::model::{ValidateRequest, ValidatedToken};
use crate::verify::validation::TokenValidation;
use crate::verify::validator::Validator;

#[derive(Debug, Default)]
struct Link {
    connected: bool,
    /// As of when our state is known complete: the arrival of the last
    /// message from upstream, less the age of upstream's own state then.
    fresh_as_of: Option<Instant>,
    synced: bool,
}

pub struct Sidecar {
    validator: Validator,
    clock: SharedClock,
    max_staleness: Duration,
    link: Mutex<Link>,
}

/// How the sidecar stands with its upstream, for health reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarStatus {
    /// A key set has been received.
    pub synced: bool,
    /// A WatchRevocations stream is open.
    pub upstream_connected: bool,
    /// How old our state is: time since anything arrived from upstream,
    /// plus how old upstream's own state was then.
    pub stale_for: Option<Duration>,
    pub max_staleness: Duration,
    pub revoked_sessions: usize,
    pub keys: usize,
}

impl SidecarStatus {
    /// Validations are answered (from state recent enough).
    pub fn serving(&self) -> bool {
        self.synced && self.stale_for.is_some_and(|s| s <= self.max_staleness)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let state = match (self.serving(), self.upstream_connected) {
            (true, true) => "serving",
            (true, false) => "degraded: upstream unreachable, validating with cached state",
            (false, _) if !self.synced => "not serving: no key set received yet",
            (false, _) => "not serving: cached state too old",
        };
        serde_json::json!({
            "status": state,
            "serving": self.serving(),
            "upstream_connected": self.upstream_connected,
            "stale_for_ms": self.stale_for.map(|d| d.as_millis() as u64),
            "max_staleness_ms": self.max_staleness.as_millis() as u64,
            "revoked_sessions": self.revoked_sessions,
            "keys": self.keys,
        })
    }
}

impl Sidecar {
    pub fn new(
        issuer: String,
        cache: usize,
        leeway: Duration,
        max_staleness: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            validator: Validator::new(issuer, cache, duration_millis(leeway)),
            clock,
            max_staleness,
            link: Mutex::new(Link::default()),
        }
    }

    /// Refuses bearer tokens of these tenants, as the authority does
    /// (`tokens.binding_required_tenants`, from the sidecar's own config:
    /// the policy is not streamed from the authority).
    pub fn with_binding_required(self, tenants: Vec<String>) -> Self {
        Self {
            validator: self.validator.with_binding_required(tenants),
            ..self
        }
    }

    pub fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    pub fn status(&self) -> SidecarStatus {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        SidecarStatus {
            synced: link.synced,
            upstream_connected: link.connected,
            stale_for: link.fresh_as_of.map(|at| at.elapsed()),
            max_staleness: self.max_staleness,
            revoked_sessions: self.validator.revoked_sessions().len(),
            keys: self.validator.keys().public_keys().len(),
        }
    }

    fn check_fresh(&self) -> Result<()> {
        let status = self.status();
        if !status.synced {
            return Err(Error::NotSynced);
        }
        match status.stale_for {
            Some(stale_for) if stale_for > self.max_staleness => Err(Error::Stale { stale_for }),
            _ => Ok(()),
        }
    }

    fn connected(&self, connected: bool) {
        self.link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .connected = connected;
    }

    /// A message arrived; upstream's state was `upstream_age` old then.
    fn heard_from_upstream(&self, upstream_age: Duration) {
        let now = Instant::now();
        self.link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fresh_as_of = Some(now.checked_sub(upstream_age).unwrap_or(now));
    }

    fn apply_keys(&self, keys: Vec<PublicKey>) {
        if keys.is_empty() {
            // Never trade a working key set for an empty one.
            tracing::warn!("upstream sent an empty key set; keeping the current one");
            return;
        }
        self.validator.set_keys(Arc::new(VerifyingKeys::new(keys)));
        self.link.lock().unwrap_or_else(|p| p.into_inner()).synced = true;
    }

    /// Withdrawn keys stop verifying here at once, whatever key set comes
    /// next (a stream resumed on a replica that lags may still list them).
    fn withdraw_keys(&self, kids: &[String]) {
        let new = self.validator.withdraw_keys(kids);
        if !new.is_empty() {
            tracing::warn!(kids = ?new, "signing keys withdrawn upstream; their tokens are refused");
        }
    }

    /// `until` is on the authority's clock: each entry is kept a leeway
    /// longer, so that a sidecar whose clock runs ahead (by up to the
    /// leeway) does not forget a revocation while a token of it is still
    /// accepted.
    fn apply_revocations(&self, sessions: &[(uuid::Uuid, Millis)]) {
        let now = self.clock.now_millis();
        let leeway = self.validator.leeway();
        let relevant: Vec<_> = sessions
            .iter()
            .map(|(id, until)| (*id, until.saturating_add(leeway)))
            .filter(|(_, until)| *until > now)
            .collect();
        self.validator.revoke(&relevant);
    }

    /// Forgets revocations that no longer matter.
    pub fn prune(&self) {
        self.validator.prune(self.clock.now_millis());
    }
}

impl TokenValidation for Sidecar {
    fn validate(&self, caller: &Caller, req: &ValidateRequest) -> Result<ValidatedToken> {
        self.check_fresh()?;
        self.validator
            .validate(caller, req, self.clock.now_millis())
    }

    fn validator(&self) -> &Validator {
        &self.validator
    }

    fn now(&self) -> Millis {
        self.clock.now_millis()
    }

    fn state_age(&self) -> Option<Duration> {
        self.status().stale_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::clock::ManualClock;

    #[test]
    fn a_sidecar_clock_ahead_by_less_than_the_leeway_keeps_revocations() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let sidecar = Sidecar::new(
            "iss".into(),
            8,
            Duration::from_secs(60),
            Duration::from_secs(300),
            clock.clone(),
        );
        let session = uuid::Uuid::now_v7();
        // Relevant until 10 s from now by the authority's clock; this
        // sidecar's clock is 50 s ahead of it.
        sidecar.apply_revocations(&[(session, 1_000_000 - 50_000 + 10_000)]);
        sidecar.prune();
        assert!(sidecar.validator.is_revoked(&session));
        // 9 s later, 1 s before the authority's deadline: still enforced.
        clock.advance(Duration::from_secs(9));
        sidecar.prune();
        assert!(sidecar.validator.is_revoked(&session));
        // Forgotten once the leeway past that has gone too.
        clock.advance(Duration::from_secs(12));
        sidecar.prune();
        assert!(!sidecar.validator.is_revoked(&session));
    }
}
