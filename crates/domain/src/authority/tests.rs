//! The authority's rules against the in-memory store: what each request
//! answers and exactly what it changes (sessions, audit trail, the
//! in-memory revocations). Time is a `ManualClock` for the service and
//! another for the store, so a test can move either.
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map};
use tempfile::TempDir;
use uuid::Uuid;

use token_authority_verify::caller::{Caller, TenantScope};
use token_authority_verify::clock::{ManualClock, Millis};
use token_authority_verify::model::{ValidateRequest, ValidatedToken};

use super::{Authority, KeyInfo, KeyStatus, Settings, REVOCATION_MARGIN};
use crate::audit::{AuditEvent, AuditKind};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::KeyAlgorithm;
use crate::memory_store::MemoryStore;
use crate::model::*;
use crate::rate_limit::Rate;
use crate::refresh_token::digest_of;
use crate::session::Session;

/// A whole second, so that `exp` (in seconds) times 1000 is exact.
const T0: Millis = 1_700_000_000_000;
const ACCESS_TTL: Millis = 300_000;
const LEEWAY: Millis = 5_000;
const IDLE_TTL: Millis = 3_600_000;
const ABSOLUTE_TTL: Millis = 86_400_000;
const RETRY_WINDOW: Millis = 30_000;
const PUBLISH_AHEAD: Millis = 600_000;
const ROTATION_INTERVAL: Millis = 86_400_000;
/// What a session must be older than to be evicted by the cap.
const EVICTABLE_AGE: Millis = ACCESS_TTL + LEEWAY;

fn settings(kek_file: PathBuf) -> Settings {
    Settings {
        issuer: "https://issuer.test".into(),
        access_ttl: ACCESS_TTL,
        session_absolute_ttl: ABSOLUTE_TTL,
        session_idle_ttl: IDLE_TTL,
        refresh_retry_window: RETRY_WINDOW,
        clock_leeway: LEEWAY,
        storage_budget: Duration::from_secs(5),
        audit_refreshes: true,
        verified_token_cache: 64,
        key_algorithm: KeyAlgorithm::EdDsa,
        key_rotation_interval: 0,
        key_publish_ahead: PUBLISH_AHEAD,
        kek_file: Some(kek_file),
        max_sessions_per_subject: 0,
        refresh_per_session: None,
    }
}

fn anonymous() -> Caller {
    Caller::anonymous()
}

/// A caller that may act on `tenants` only.
fn limited_to(name: &str, tenants: &[&str]) -> Caller {
    Caller {
        name: Arc::from(name),
        tenants: TenantScope::Only(Arc::new(
            tenants
                .iter()
                .map(|t| t.to_string())
                .collect::<BTreeSet<_>>(),
        )),
    }
}

fn millis(ms: Millis) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap())
}

struct Fixture {
    authority: Authority,
    store: Arc<MemoryStore>,
    /// The service's clock.
    clock: Arc<ManualClock>,
    /// The store's clock (`rotated_at`, and what it is compared with).
    store_clock: Arc<ManualClock>,
    settings: Settings,
    _kek_dir: TempDir,
}

impl Fixture {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(change: impl FnOnce(&mut Settings)) -> Self {
        let kek_dir = TempDir::new().unwrap();
        let mut settings = settings(kek_dir.path().join("kek"));
        change(&mut settings);
        let clock = Arc::new(ManualClock::new(T0));
        let store_clock = Arc::new(ManualClock::new(T0));
        let store = Arc::new(MemoryStore::new().with_clock(store_clock.clone()));
        let authority = Authority::start(store.clone(), clock.clone(), settings.clone())
            .await
            .unwrap();
        Self {
            authority,
            store,
            clock,
            store_clock,
            settings,
            _kek_dir: kek_dir,
        }
    }

    /// Another replica on the same store (and KEK), on the same clock.
    async fn replica(&self) -> Authority {
        Authority::start(
            self.store.clone(),
            self.clock.clone(),
            self.settings.clone(),
        )
        .await
        .unwrap()
    }

    /// Moves both clocks.
    fn advance(&self, ms: Millis) {
        self.clock.advance(millis(ms));
        self.store_clock.advance(millis(ms));
    }

    async fn issue(&self, tenant: &str, subject: &str) -> TokenPair {
        self.try_issue(&anonymous(), tenant, subject).await.unwrap()
    }

    async fn try_issue(&self, caller: &Caller, tenant: &str, subject: &str) -> Result<TokenPair> {
        self.authority
            .issue(
                caller,
                IssueRequest {
                    tenant_id: tenant.into(),
                    subject: subject.into(),
                    audience: "api".into(),
                    scopes: vec!["read".into(), "write".into()],
                    device: Device {
                        name: "laptop".into(),
                        user_agent: "test/1".into(),
                        ip: "192.0.2.1".into(),
                    },
                    extra_claims: Map::new(),
                },
            )
            .await
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        self.refresh_as(&anonymous(), refresh_token).await
    }

    async fn refresh_as(&self, caller: &Caller, refresh_token: &str) -> Result<TokenPair> {
        self.authority
            .refresh(
                caller,
                RefreshRequest {
                    refresh_token: refresh_token.into(),
                    device: Device::default(),
                },
            )
            .await
    }

    async fn revoke(
        &self,
        caller: &Caller,
        tenant: &str,
        target: RevokeTarget,
        reason: &str,
    ) -> Result<u32> {
        self.authority
            .revoke(
                caller,
                RevokeRequest {
                    tenant_id: tenant.into(),
                    target: Some(target),
                    reason: reason.into(),
                },
            )
            .await
    }

    async fn list(
        &self,
        caller: &Caller,
        tenant: &str,
        subject: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<SessionPage> {
        self.authority
            .list_sessions(
                caller,
                ListSessionsRequest {
                    tenant_id: tenant.into(),
                    subject: subject.into(),
                    page_size,
                    page_token: page_token.into(),
                },
            )
            .await
    }

    fn validate(&self, access_token: &str) -> Result<ValidatedToken> {
        validate(&self.authority, &anonymous(), access_token)
    }

    fn session(&self, id: &str) -> Session {
        self.store.session(id).unwrap()
    }

    /// Everything a request could change in the store.
    fn snapshot(&self) -> (Vec<Session>, Vec<AuditEvent>) {
        (self.store.sessions(), self.store.audit_events())
    }

    /// The session-related audit events, as (kind, session id).
    fn session_events(&self) -> Vec<(AuditKind, String)> {
        self.store
            .audit_events()
            .into_iter()
            .filter_map(|e| e.session_id.map(|id| (e.kind, id)))
            .collect()
    }
}

fn validate(authority: &Authority, caller: &Caller, access_token: &str) -> Result<ValidatedToken> {
    authority.validate(
        caller,
        &ValidateRequest {
            access_token: access_token.into(),
            expected_audience: "api".into(),
            expected_tenant_id: String::new(),
        },
    )
}

fn session_target(pair: &TokenPair) -> RevokeTarget {
    RevokeTarget::Session(pair.session_id.clone())
}

/// Asserts that `$result` is an error matching the pattern (and guard).
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!("expected {}, got {other:?}", stringify!($pattern $(if $guard)?)),
        }
    };
}

#[tokio::test]
async fn an_issued_session_is_stored_audited_and_its_token_validates() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;

    assert_eq!(pair.access_token_expires_at, T0 + ACCESS_TTL);
    assert_eq!(pair.refresh_token_expires_at, T0 + IDLE_TTL);
    let s = fx.session(&pair.session_id);
    assert_eq!(
        (
            s.tenant_id.as_str(),
            s.subject.as_str(),
            s.audience.as_str()
        ),
        ("acme", "alice", "api")
    );
    assert_eq!(s.scopes, "read write");
    assert_eq!(s.generation, 0);
    assert_eq!(s.token_digest, digest_of(&pair.refresh_token).to_vec());
    assert_eq!((s.created_at, s.last_used_at), (T0, T0));
    assert_eq!(
        (s.expires_at, s.idle_expires_at),
        (T0 + ABSOLUTE_TTL, T0 + IDLE_TTL)
    );
    assert_eq!(
        (s.previous_digest, s.rotated_at, s.revoked_at),
        (None, None, None)
    );
    assert_eq!(
        (s.device_name.as_str(), s.user_agent.as_str(), s.ip.as_str()),
        ("laptop", "test/1", "192.0.2.1")
    );

    let issued = fx.store.audit_events_of_kind(AuditKind::Issued);
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].session_id.as_deref(), Some(&*pair.session_id));
    assert_eq!(issued[0].detail.as_deref(), Some("by anonymous"));
    assert_eq!(issued[0].at, T0);

    let claims = fx.validate(&pair.access_token).unwrap().claims;
    assert_eq!(claims.sid, pair.session_id);
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.tenant.as_str(),
            claims.scope.as_str()
        ),
        ("alice", "acme", "read write")
    );
    assert_eq!(claims.iss, "https://issuer.test");
    assert_eq!(
        (claims.iat, claims.exp),
        (T0 / 1000, (T0 + ACCESS_TTL) / 1000)
    );
}

#[tokio::test]
async fn extra_claims_are_stored_and_copied_into_every_access_token() {
    let fx = Fixture::new().await;
    let mut extra = Map::new();
    extra.insert("org".into(), json!("r&d"));
    let pair = fx
        .authority
        .issue(
            &anonymous(),
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                extra_claims: extra.clone(),
                ..IssueRequest::default()
            },
        )
        .await
        .unwrap();
    let next = fx.refresh(&pair.refresh_token).await.unwrap();
    for token in [&pair.access_token, &next.access_token] {
        assert_eq!(fx.validate(token).unwrap().claims.extra, extra);
    }
}

#[tokio::test]
async fn a_refresh_rotates_and_a_lost_answer_may_be_retried_until_the_successor_is_used() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    fx.advance(1_000);

    let second = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.refresh_token_expires_at, T0 + 1_000 + IDLE_TTL);
    let s = fx.session(&first.session_id);
    assert_eq!(s.generation, 1);
    assert_eq!(s.token_digest, digest_of(&second.refresh_token).to_vec());
    assert_eq!(
        s.previous_digest,
        Some(digest_of(&first.refresh_token).to_vec())
    );
    assert_eq!(s.rotated_at, Some(T0 + 1_000));
    assert_eq!(s.last_used_at, T0 + 1_000);
    assert_eq!(s.idle_expires_at, T0 + 1_000 + IDLE_TTL);
    let refreshed = fx.store.audit_events_of_kind(AuditKind::Refreshed);
    assert_eq!(refreshed.len(), 1);
    assert_eq!(refreshed[0].detail.as_deref(), Some("generation 1"));

    // The first token again, within the window, its successor unused: the
    // same successor, and nothing changes.
    fx.advance(1_000);
    let before = fx.snapshot();
    let retried = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, second.refresh_token);
    assert_eq!(retried.session_id, first.session_id);
    assert_eq!(fx.snapshot(), before);
    fx.validate(&retried.access_token).unwrap();

    // The successor is used: the first token is now a replay.
    fx.advance(1_000);
    let third = fx.refresh(&second.refresh_token).await.unwrap();
    assert_eq!(fx.session(&first.session_id).generation, 2);
    fx.advance(1_000);
    assert_err!(fx.refresh(&first.refresh_token).await, Error::TokenReused);

    let s = fx.session(&first.session_id);
    assert_eq!(s.revoked_at, Some(T0 + 4_000));
    assert_eq!(
        s.revoke_reason.as_deref(),
        Some("refresh token reuse detected")
    );
    assert_eq!(s.revocation_seq, Some(1));
    assert_eq!(s.generation, 2);
    let reuse = fx.store.audit_events_of_kind(AuditKind::ReuseDetected);
    assert_eq!(reuse.len(), 1);
    assert_eq!(reuse[0].session_id.as_deref(), Some(&*first.session_id));
    assert_eq!(
        (reuse[0].at, reuse[0].detail.as_deref()),
        (T0 + 4_000, Some("refresh token reuse detected"))
    );
    let id = first.session_id.clone();
    assert_eq!(
        fx.session_events(),
        [
            (AuditKind::Issued, id.clone()),
            (AuditKind::Refreshed, id.clone()),
            (AuditKind::Refreshed, id.clone()),
            (AuditKind::ReuseDetected, id),
        ]
    );

    // Every token of the session is dead, at once on this replica.
    assert_err!(
        fx.refresh(&third.refresh_token).await,
        Error::SessionRevoked
    );
    assert_err!(
        fx.refresh(&first.refresh_token).await,
        Error::SessionRevoked
    );
    assert_err!(fx.validate(&third.access_token), Error::SessionRevoked);
    assert_err!(fx.validate(&second.access_token), Error::SessionRevoked);
    assert_eq!(
        fx.store
            .audit_events_of_kind(AuditKind::ReuseDetected)
            .len(),
        1
    );
}

#[tokio::test]
async fn a_token_two_generations_old_is_a_replay_even_within_the_window() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    let second = fx.refresh(&first.refresh_token).await.unwrap();
    let third = fx.refresh(&second.refresh_token).await.unwrap();
    fx.refresh(&third.refresh_token).await.unwrap();
    assert_err!(fx.refresh(&second.refresh_token).await, Error::TokenReused);
    assert!(fx.session(&first.session_id).revoked_at.is_some());
}

#[tokio::test]
async fn the_retry_window_runs_on_the_stores_clock() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    let second = fx.refresh(&first.refresh_token).await.unwrap();

    // The service's clock moves past the window, the store's does not: a
    // retry (this replica's clock is ahead, or it stalled).
    fx.clock.advance(millis(RETRY_WINDOW + 1));
    let retried = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, second.refresh_token);
    assert!(fx.session(&first.session_id).revoked_at.is_none());

    // The store's clock reaches the window's end: still a retry.
    fx.store_clock.advance(millis(RETRY_WINDOW));
    let retried = fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retried.refresh_token, second.refresh_token);

    // One millisecond more on the store's clock only: a replay.
    fx.store_clock.advance(millis(1));
    assert_err!(fx.refresh(&first.refresh_token).await, Error::TokenReused);
    let s = fx.session(&first.session_id);
    assert_eq!(s.revoked_at, Some(T0 + RETRY_WINDOW + 1));
    assert_eq!(
        s.revoke_reason.as_deref(),
        Some("refresh token reuse detected")
    );
    assert_err!(
        fx.refresh(&second.refresh_token).await,
        Error::SessionRevoked
    );
}

#[tokio::test]
async fn the_store_stamps_rotations_with_its_own_clock() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    fx.store_clock.advance(millis(7_000));
    fx.refresh(&first.refresh_token).await.unwrap();
    let s = fx.session(&first.session_id);
    assert_eq!(s.rotated_at, Some(T0 + 7_000));
    assert_eq!(s.last_used_at, T0);
}

#[tokio::test]
async fn an_idle_session_expires_and_a_used_one_does_not() {
    let fx = Fixture::new().await;
    let used = fx.issue("acme", "alice").await;
    let idle = fx.issue("acme", "alice").await;
    fx.advance(IDLE_TTL - 1);
    let used = fx.refresh(&used.refresh_token).await.unwrap();
    fx.advance(1);
    let before = fx.snapshot();
    assert_err!(fx.refresh(&idle.refresh_token).await, Error::SessionExpired);
    assert_eq!(fx.snapshot(), before);
    assert_eq!(fx.session(&idle.session_id).revoked_at, None);
    fx.refresh(&used.refresh_token).await.unwrap();
    // Expired sessions are not listed.
    let page = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    let ids: Vec<_> = page.sessions.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(ids, [used.session_id]);
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_expiry_however_often_it_is_refreshed() {
    let fx = Fixture::new().await;
    let mut pair = fx.issue("acme", "alice").await;
    let step = IDLE_TTL - 600_000;
    while fx.authority.now() + step < T0 + ABSOLUTE_TTL - 60_000 {
        fx.advance(step);
        pair = fx.refresh(&pair.refresh_token).await.unwrap();
    }
    // A minute before the end: tokens do not outlive the session.
    let now = fx.authority.now();
    fx.advance(T0 + ABSOLUTE_TTL - 60_000 - now);
    pair = fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(pair.refresh_token_expires_at, T0 + ABSOLUTE_TTL);
    assert_eq!(pair.access_token_expires_at, T0 + ABSOLUTE_TTL);
    assert_eq!(fx.session(&pair.session_id).generation, 29);

    fx.advance(60_000);
    assert_err!(fx.refresh(&pair.refresh_token).await, Error::SessionExpired);
    assert_eq!(fx.session(&pair.session_id).generation, 29);
}

#[tokio::test]
async fn a_malformed_or_forged_refresh_token_is_refused_before_the_store() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    // One character changed inside the token's secret: the MAC fails.
    let mut forged = pair.refresh_token.clone().into_bytes();
    forged[60] = if forged[60] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    fx.store.set_unavailable(true);
    assert_err!(fx.refresh(&forged).await, Error::TokenInvalid);
    assert_err!(fx.refresh("rt1_nonsense").await, Error::TokenInvalid);
    assert_err!(fx.refresh("").await, Error::InvalidArgument { .. });
}

#[tokio::test]
async fn a_refresh_token_of_another_authority_is_invalid() {
    let fx = Fixture::new().await;
    let other = Fixture::new().await;
    let pair = other.issue("acme", "alice").await;
    assert_err!(fx.refresh(&pair.refresh_token).await, Error::TokenInvalid);
    // Nor do its access tokens validate here (another key).
    assert_err!(fx.validate(&pair.access_token), Error::TokenInvalid);
}

#[tokio::test]
async fn refreshes_are_audited_only_when_configured() {
    let fx = Fixture::with(|s| s.audit_refreshes = false).await;
    let first = fx.issue("acme", "alice").await;
    fx.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(fx.session(&first.session_id).generation, 1);
    assert!(fx
        .store
        .audit_events_of_kind(AuditKind::Refreshed)
        .is_empty());
}

#[tokio::test]
async fn refreshes_of_one_session_are_rate_limited() {
    let fx = Fixture::with(|s| {
        s.refresh_per_session = Some(Rate {
            count: NonZeroU32::new(2).unwrap(),
            per: Duration::from_secs(60),
        })
    })
    .await;
    let a = fx.issue("acme", "alice").await;
    let b = fx.issue("acme", "alice").await;
    let a = fx.refresh(&a.refresh_token).await.unwrap();
    let a = fx.refresh(&a.refresh_token).await.unwrap();
    let before = fx.snapshot();
    assert_err!(
        fx.refresh(&a.refresh_token).await,
        Error::RateLimited { .. }
    );
    assert_eq!(fx.snapshot(), before);
    // Another session has its own allowance; time restores this one's.
    fx.refresh(&b.refresh_token).await.unwrap();
    fx.advance(30_000);
    fx.refresh(&a.refresh_token).await.unwrap();
}

#[tokio::test]
async fn revoking_a_session_by_id_ends_it_once() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let other = fx.issue("acme", "alice").await;
    fx.advance(1_000);
    let revoked = fx
        .revoke(&anonymous(), "acme", session_target(&pair), "lost laptop")
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    let s = fx.session(&pair.session_id);
    assert_eq!(s.revoked_at, Some(T0 + 1_000));
    assert_eq!(
        s.revoke_reason.as_deref(),
        Some("lost laptop (by anonymous)")
    );
    assert_eq!(s.revocation_seq, Some(1));
    let events = fx.store.audit_events_of_kind(AuditKind::Revoked);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].session_id.as_deref(), Some(&*pair.session_id));
    assert_eq!(
        events[0].detail.as_deref(),
        Some("lost laptop (by anonymous)")
    );

    assert_err!(fx.validate(&pair.access_token), Error::SessionRevoked);
    assert_err!(fx.refresh(&pair.refresh_token).await, Error::SessionRevoked);
    fx.validate(&other.access_token).unwrap();

    // Again: nothing to do, nothing recorded.
    let before = fx.snapshot();
    let again = fx
        .revoke(&anonymous(), "acme", session_target(&pair), "")
        .await;
    assert_eq!(again.unwrap(), 0);
    assert_eq!(fx.snapshot(), before);
}

#[tokio::test]
async fn revoking_an_unknown_session_or_one_of_another_tenant_finds_nothing() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let before = fx.snapshot();
    let unknown = RevokeTarget::Session(Uuid::now_v7().to_string());
    assert_err!(
        fx.revoke(&anonymous(), "acme", unknown, "").await,
        Error::SessionNotFound
    );
    assert_err!(
        fx.revoke(&anonymous(), "globex", session_target(&pair), "")
            .await,
        Error::SessionNotFound
    );
    let garbled = RevokeTarget::Session("not-a-uuid".into());
    assert_err!(
        fx.revoke(&anonymous(), "acme", garbled, "").await,
        Error::InvalidArgument { .. }
    );
    assert_err!(
        fx.authority
            .revoke(
                &anonymous(),
                RevokeRequest {
                    tenant_id: "acme".into(),
                    target: None,
                    reason: String::new(),
                },
            )
            .await,
        Error::InvalidArgument { .. }
    );
    assert_eq!(fx.snapshot(), before);
    fx.validate(&pair.access_token).unwrap();
}

#[tokio::test]
async fn revoking_by_refresh_token_ends_its_session() {
    let fx = Fixture::new().await;
    let first = fx.issue("acme", "alice").await;
    let second = fx.refresh(&first.refresh_token).await.unwrap();
    let target = RevokeTarget::RefreshToken(second.refresh_token.clone());
    assert_eq!(fx.revoke(&anonymous(), "", target, "").await.unwrap(), 1);
    let s = fx.session(&first.session_id);
    assert_eq!(s.revoke_reason.as_deref(), Some("revoked by anonymous"));
    assert_err!(fx.validate(&second.access_token), Error::SessionRevoked);
    assert_err!(
        fx.refresh(&second.refresh_token).await,
        Error::SessionRevoked
    );
    // With a tenant that is not the session's: not found.
    let other = fx.issue("acme", "bob").await;
    let target = RevokeTarget::RefreshToken(other.refresh_token.clone());
    assert_err!(
        fx.revoke(&anonymous(), "globex", target, "").await,
        Error::SessionNotFound
    );
    assert_eq!(fx.session(&other.session_id).revoked_at, None);
    // A forged token revokes nothing.
    let forged = RevokeTarget::RefreshToken(format!("{}x", &other.refresh_token[..60]));
    assert_err!(
        fx.revoke(&anonymous(), "", forged, "").await,
        Error::TokenInvalid
    );
    assert_eq!(fx.session(&other.session_id).revoked_at, None);
}

#[tokio::test]
async fn revoking_a_subject_ends_its_live_sessions_in_that_tenant_only() {
    let fx = Fixture::new().await;
    let a1 = fx.issue("acme", "alice").await;
    let a2 = fx.issue("acme", "alice").await;
    let a3 = fx.issue("acme", "alice").await;
    let bob = fx.issue("acme", "bob").await;
    let elsewhere = fx.issue("globex", "alice").await;
    // One already revoked: not counted again.
    fx.revoke(&anonymous(), "acme", session_target(&a3), "")
        .await
        .unwrap();
    fx.advance(1_000);

    let all = RevokeTarget::AllSessions {
        subject: "alice".into(),
    };
    let n = fx
        .revoke(&anonymous(), "acme", all.clone(), "offboarded")
        .await;
    assert_eq!(n.unwrap(), 2);
    for pair in [&a1, &a2] {
        let s = fx.session(&pair.session_id);
        assert_eq!(s.revoked_at, Some(T0 + 1_000));
        assert_eq!(
            s.revoke_reason.as_deref(),
            Some("offboarded (by anonymous)")
        );
        assert_eq!(s.revocation_seq, Some(2));
        assert_err!(fx.validate(&pair.access_token), Error::SessionRevoked);
    }
    assert_eq!(fx.session(&a3.session_id).revoked_at, Some(T0));
    let revoked: Vec<_> = fx
        .store
        .audit_events_of_kind(AuditKind::Revoked)
        .into_iter()
        .map(|e| e.session_id.unwrap())
        .collect();
    assert_eq!(
        revoked,
        [
            a3.session_id.clone(),
            a1.session_id.clone(),
            a2.session_id.clone()
        ]
    );
    fx.refresh(&bob.refresh_token).await.unwrap();
    fx.refresh(&elsewhere.refresh_token).await.unwrap();
    fx.validate(&bob.access_token).unwrap();
    fx.validate(&elsewhere.access_token).unwrap();

    assert_eq!(fx.revoke(&anonymous(), "acme", all, "").await.unwrap(), 0);
}

#[tokio::test]
async fn a_caller_limited_to_other_tenants_changes_nothing() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let outsider = limited_to("globex-admin", &["globex"]);
    let before = fx.snapshot();

    assert_err!(
        fx.try_issue(&outsider, "acme", "alice").await,
        Error::TenantNotPermitted
    );
    assert_err!(
        fx.refresh_as(&outsider, &pair.refresh_token).await,
        Error::TenantNotPermitted
    );
    for tenant in ["acme", ""] {
        let target = RevokeTarget::RefreshToken(pair.refresh_token.clone());
        assert_err!(
            fx.revoke(&outsider, tenant, target, "").await,
            Error::TenantNotPermitted
        );
    }
    assert_err!(
        fx.revoke(&outsider, "acme", session_target(&pair), "")
            .await,
        Error::TenantNotPermitted
    );
    // Naming its own tenant does not reach the session of another.
    assert_err!(
        fx.revoke(&outsider, "globex", session_target(&pair), "")
            .await,
        Error::SessionNotFound
    );
    let all = RevokeTarget::AllSessions {
        subject: "alice".into(),
    };
    assert_err!(
        fx.revoke(&outsider, "acme", all, "").await,
        Error::TenantNotPermitted
    );
    assert_err!(
        fx.list(&outsider, "acme", "alice", 0, "").await,
        Error::TenantNotPermitted
    );
    assert_err!(
        validate(&fx.authority, &outsider, &pair.access_token),
        Error::TenantNotPermitted
    );
    assert_eq!(fx.snapshot(), before);

    // The owner's token still works, at the generation it had.
    let insider = limited_to("acme-app", &["acme", "initech"]);
    validate(&fx.authority, &insider, &pair.access_token).unwrap();
    let next = fx.refresh_as(&insider, &pair.refresh_token).await.unwrap();
    assert_eq!(fx.session(&pair.session_id).generation, 1);
    // A replay by an outsider is refused as such: it cannot get the
    // session revoked for reuse.
    fx.advance(RETRY_WINDOW + 1);
    let before = fx.snapshot();
    assert_err!(
        fx.refresh_as(&outsider, &pair.refresh_token).await,
        Error::TenantNotPermitted
    );
    assert_eq!(fx.snapshot(), before);
    let page = fx.list(&insider, "acme", "alice", 0, "").await.unwrap();
    assert_eq!(page.sessions.len(), 1);
    let target = RevokeTarget::RefreshToken(next.refresh_token.clone());
    assert_eq!(fx.revoke(&insider, "", target, "").await.unwrap(), 1);
    let issued_by = fx.try_issue(&insider, "initech", "carol").await.unwrap();
    let event = fx.store.audit_events().pop().unwrap();
    assert_eq!(event.session_id.as_deref(), Some(&*issued_by.session_id));
    assert_eq!(event.detail.as_deref(), Some("by acme-app"));
}

#[tokio::test]
async fn the_session_cap_evicts_the_least_recently_used_session_once_it_is_old_enough() {
    let fx = Fixture::with(|s| s.max_sessions_per_subject = 2).await;
    let s1 = fx.issue("acme", "alice").await;
    let s2 = fx.issue("acme", "alice").await;

    // Both are younger than an access token's lifetime: none may go yet.
    let before = fx.snapshot();
    assert_err!(
        fx.try_issue(&anonymous(), "acme", "alice").await,
        Error::SessionLimit { retry_after } if retry_after == millis(EVICTABLE_AGE + 1)
    );
    assert_eq!(fx.snapshot(), before);
    // Another subject, or another tenant, has a cap of its own.
    fx.issue("acme", "bob").await;
    fx.issue("globex", "alice").await;
    fx.advance(EVICTABLE_AGE);
    // One millisecond to go: the hint is at least a second.
    assert_err!(
        fx.try_issue(&anonymous(), "acme", "alice").await,
        Error::SessionLimit { retry_after } if retry_after == Duration::from_secs(1)
    );

    fx.advance(1);
    let s1 = fx.refresh(&s1.refresh_token).await.unwrap();
    fx.advance(1_000);
    let s2 = fx.refresh(&s2.refresh_token).await.unwrap();
    let evicted_at = fx.authority.now();
    let s3 = fx.issue("acme", "alice").await;

    // `s1` was used least recently.
    let victim = fx.session(&s1.session_id);
    assert_eq!(victim.revoked_at, Some(evicted_at));
    assert_eq!(
        victim.revoke_reason.as_deref(),
        Some("evicted: more than 2 sessions")
    );
    assert!(victim.revocation_seq.is_some());
    let evicted = fx.store.audit_events_of_kind(AuditKind::Evicted);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].session_id.as_deref(), Some(&*s1.session_id));
    assert_eq!(
        evicted[0].detail,
        Some(format!(
            "evicted: more than 2 sessions; for session {}",
            s3.session_id
        ))
    );
    assert_err!(fx.validate(&s1.access_token), Error::SessionRevoked);
    assert_err!(fx.refresh(&s1.refresh_token).await, Error::SessionRevoked);
    fx.validate(&s2.access_token).unwrap();
    fx.validate(&s3.access_token).unwrap();
    let page = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    let ids: Vec<_> = page.sessions.into_iter().map(|s| s.session_id).collect();
    assert_eq!(ids, [s2.session_id, s3.session_id]);
}

#[tokio::test]
async fn sessions_are_listed_in_creation_order_page_by_page() {
    let fx = Fixture::new().await;
    let mut live = Vec::new();
    for i in 0..6 {
        let pair = fx.issue("acme", "alice").await;
        fx.advance(1_000);
        if i == 2 {
            fx.revoke(&anonymous(), "acme", session_target(&pair), "")
                .await
                .unwrap();
        } else {
            live.push(pair.session_id);
        }
    }
    fx.issue("acme", "bob").await;
    fx.issue("globex", "alice").await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut sizes = Vec::new();
    loop {
        let page = fx
            .list(&anonymous(), "acme", "alice", 2, &token)
            .await
            .unwrap();
        sizes.push(page.sessions.len());
        seen.extend(page.sessions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(sizes, [2, 2, 1]);
    let ids: Vec<_> = seen.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(ids, live);
    let first = &seen[0];
    assert_eq!(
        first,
        &SessionInfo {
            session_id: live[0].clone(),
            created_at: T0,
            last_used_at: T0,
            expires_at: T0 + IDLE_TTL,
            refresh_count: 0,
            device: Device {
                name: "laptop".into(),
                user_agent: "test/1".into(),
                ip: "192.0.2.1".into(),
            },
            audience: "api".into(),
            scopes: vec!["read".into(), "write".into()],
        }
    );

    // A page size of 0 is the default (50): everything at once.
    let all = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    assert_eq!(all.sessions.len(), 5);
    assert_eq!(all.next_page_token, "");
    // Exactly a page: no token for an empty next page.
    let five = fx.list(&anonymous(), "acme", "alice", 5, "").await.unwrap();
    assert_eq!(
        (five.sessions.len(), five.next_page_token.as_str()),
        (5, "")
    );
    assert_err!(
        fx.list(&anonymous(), "acme", "alice", 2, "!!").await,
        Error::InvalidArgument {
            field: "page_token",
            ..
        }
    );
    assert!(fx
        .list(&anonymous(), "acme", "nobody", 2, "")
        .await
        .unwrap()
        .sessions
        .is_empty());
}

#[tokio::test]
async fn a_listed_session_shows_its_refreshes_and_new_device() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    fx.advance(5_000);
    fx.authority
        .refresh(
            &anonymous(),
            RefreshRequest {
                refresh_token: pair.refresh_token.clone(),
                device: Device {
                    name: String::new(),
                    user_agent: "test/2".into(),
                    ip: "2001:db8::1".into(),
                },
            },
        )
        .await
        .unwrap();
    let page = fx.list(&anonymous(), "acme", "alice", 0, "").await.unwrap();
    let info = &page.sessions[0];
    assert_eq!(info.refresh_count, 1);
    assert_eq!(info.last_used_at, T0 + 5_000);
    assert_eq!(info.expires_at, T0 + 5_000 + IDLE_TTL);
    assert_eq!(
        info.device,
        Device {
            name: "laptop".into(),
            user_agent: "test/2".into(),
            ip: "2001:db8::1".into(),
        }
    );
}

#[tokio::test]
async fn an_unavailable_store_answers_storage_unavailable_and_nothing_changes() {
    let fx = Fixture::new().await;
    let pair = fx.issue("acme", "alice").await;
    let keys = fx.authority.list_signing_keys().await.unwrap();
    let before = fx.snapshot();
    fx.store.set_unavailable(true);

    let unavailable = |what: &str, e: Error| {
        assert!(matches!(e, Error::Unavailable(_)), "{what}: {e:?}");
        assert_eq!(e.reason(), "STORAGE_UNAVAILABLE", "{what}");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{what}");
    };
    let a = anonymous();
    unavailable(
        "issue",
        fx.try_issue(&a, "acme", "alice").await.unwrap_err(),
    );
    unavailable(
        "refresh",
        fx.refresh(&pair.refresh_token).await.unwrap_err(),
    );
    let by_id = fx.revoke(&a, "acme", session_target(&pair), "").await;
    unavailable("revoke session", by_id.unwrap_err());
    let by_token = RevokeTarget::RefreshToken(pair.refresh_token.clone());
    unavailable(
        "revoke token",
        fx.revoke(&a, "", by_token, "").await.unwrap_err(),
    );
    let all = RevokeTarget::AllSessions {
        subject: "alice".into(),
    };
    unavailable(
        "revoke all",
        fx.revoke(&a, "acme", all, "").await.unwrap_err(),
    );
    unavailable(
        "list",
        fx.list(&a, "acme", "alice", 0, "").await.unwrap_err(),
    );
    unavailable(
        "rotate key",
        fx.authority
            .rotate_signing_key(&a, None, Some(0))
            .await
            .unwrap_err(),
    );
    unavailable(
        "list keys",
        fx.authority.list_signing_keys().await.unwrap_err(),
    );
    unavailable("sync", fx.authority.sync_from_store().await.unwrap_err());

    // Validation needs no store.
    fx.validate(&pair.access_token).unwrap();

    fx.store.set_unavailable(false);
    assert_eq!(fx.snapshot(), before);
    assert_eq!(fx.authority.list_signing_keys().await.unwrap(), keys);
    // The refresh token was not spent: it rotates normally now.
    fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(fx.session(&pair.session_id).generation, 1);
}

#[tokio::test]
async fn a_start_against_an_unavailable_store_fails_unavailable() {
    let kek_dir = TempDir::new().unwrap();
    let store = Arc::new(MemoryStore::new());
    store.set_unavailable(true);
    let clock = Arc::new(ManualClock::new(T0));
    let started = Authority::start(store.clone(), clock, settings(kek_dir.path().join("kek")));
    match started.await {
        Err(e) => assert_eq!(e.reason(), "STORAGE_UNAVAILABLE", "{e:?}"),
        Ok(_) => panic!("started without a store"),
    }
    store.set_unavailable(false);
    assert!(store.audit_events().is_empty());
    assert!(store.sessions().is_empty());
}

/// (status, retired_at, verifies_until) of each key, newest first.
fn statuses(keys: &[KeyInfo]) -> Vec<(KeyStatus, Option<Millis>, Option<Millis>)> {
    keys.iter()
        .map(|k| (k.status, k.retired_at, k.verifies_until))
        .collect()
}

#[tokio::test]
async fn a_rotated_key_is_published_first_and_signs_after_publish_ahead() {
    let fx = Fixture::new().await;
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(statuses(&keys), [(KeyStatus::Active, None, None)]);
    let old = keys[0].clone();
    assert_eq!((old.activates_at, old.created_at), (T0, T0));
    assert_eq!(old.algorithm, "EdDSA");
    let first_start = fx.store.audit_events_of_kind(AuditKind::KeyRotated);
    assert_eq!(first_start.len(), 1);
    assert_eq!(first_start[0].subject, "first start");

    fx.advance(1_000);
    let operator = limited_to("operator", &[]);
    let new = fx
        .authority
        .rotate_signing_key(&operator, None, None)
        .await
        .unwrap();
    let activates_at = T0 + 1_000 + PUBLISH_AHEAD;
    assert_eq!(new.status, KeyStatus::Pending);
    assert_eq!(
        (new.created_at, new.activates_at),
        (T0 + 1_000, activates_at)
    );
    assert_eq!((new.retired_at, new.verifies_until), (None, None));
    assert_ne!(new.kid, old.kid);
    let rotated = fx.store.audit_events_of_kind(AuditKind::KeyRotated);
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[1].subject, "operator");
    assert_eq!(
        rotated[1].detail,
        Some(format!("kid {} (EdDSA) signs from {activates_at}", new.kid))
    );

    let verifies_until = activates_at + ACCESS_TTL + REVOCATION_MARGIN;
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        [new.kid.as_str(), old.kid.as_str()]
    );
    assert_eq!(
        statuses(&keys),
        [
            (KeyStatus::Pending, None, None),
            (KeyStatus::Active, Some(activates_at), Some(verifies_until)),
        ]
    );
    // The old key signs until then; the new one is published already.
    let pair = fx.issue("acme", "alice").await;
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, old.kid);
    assert_eq!(fx.authority.validator().keys().public_keys().len(), 2);

    fx.advance(PUBLISH_AHEAD - 1);
    let pair = fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, old.kid);
    assert_eq!(
        statuses(&fx.authority.list_signing_keys().await.unwrap())[0].0,
        KeyStatus::Pending
    );

    fx.advance(1);
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(
        statuses(&keys),
        [
            (KeyStatus::Active, None, None),
            (KeyStatus::Retired, Some(activates_at), Some(verifies_until)),
        ]
    );
    let old_signed = pair.access_token.clone();
    let pair = fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, new.kid);
    // Tokens of the retired key still verify while they live.
    assert_eq!(fx.validate(&old_signed).unwrap().key_id, old.kid);
}

#[tokio::test]
async fn a_key_rotated_to_activate_now_signs_at_once_and_a_second_one_a_millisecond_later() {
    let fx = Fixture::new().await;
    fx.advance(1_000);
    let now = fx.authority.now();
    let first = fx
        .authority
        .rotate_signing_key(&anonymous(), Some(KeyAlgorithm::Es256), Some(0))
        .await
        .unwrap();
    assert_eq!((first.status, first.activates_at), (KeyStatus::Active, now));
    assert_eq!(first.algorithm, "ES256");
    let pair = fx.issue("acme", "alice").await;
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, first.kid);

    // Activation times are strictly increasing: the second key of the same
    // millisecond is moved one millisecond on, so it is still pending.
    let second = fx
        .authority
        .rotate_signing_key(&anonymous(), None, Some(0))
        .await
        .unwrap();
    assert_eq!(
        (second.status, second.activates_at),
        (KeyStatus::Pending, now + 1)
    );
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(
        statuses(&keys),
        [
            (KeyStatus::Pending, None, None),
            (
                KeyStatus::Active,
                Some(now + 1),
                Some(now + 1 + ACCESS_TTL + REVOCATION_MARGIN)
            ),
            (
                KeyStatus::Retired,
                Some(now),
                Some(now + ACCESS_TTL + REVOCATION_MARGIN)
            ),
        ]
    );
    for bad in [-1, 365 * 24 * 3600 * 1000 + 1] {
        assert_err!(
            fx.authority
                .rotate_signing_key(&anonymous(), None, Some(bad))
                .await,
            Error::InvalidArgument {
                field: "activate_in",
                ..
            }
        );
    }
    assert_eq!(fx.authority.list_signing_keys().await.unwrap().len(), 3);
}

#[tokio::test]
async fn scheduled_rotation_adds_one_key_per_interval() {
    let fx = Fixture::with(|s| s.key_rotation_interval = ROTATION_INTERVAL).await;
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    fx.advance(ROTATION_INTERVAL - 1);
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    fx.advance(1);
    // Due when the newest activated *before* `now - interval`.
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    fx.advance(1);
    let kid = fx.authority.rotate_if_due().await.unwrap().unwrap();
    // Another replica's call right after: the newest key is pending.
    let replica = fx.replica().await;
    assert_eq!(replica.rotate_if_due().await.unwrap(), None);
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].kid, kid);
    assert_eq!(keys[0].activates_at, fx.authority.now() + PUBLISH_AHEAD);
    let rotated = fx.store.audit_events_of_kind(AuditKind::KeyRotated);
    assert_eq!(rotated.last().unwrap().subject, "schedule");
    // Without an interval, never.
    let off = Fixture::new().await;
    off.advance(10 * ROTATION_INTERVAL);
    assert_eq!(off.authority.rotate_if_due().await.unwrap(), None);
}

#[tokio::test]
async fn another_replica_shares_the_keys_and_secret_and_learns_revocations_by_sync() {
    let fx = Fixture::new().await;
    let replica = fx.replica().await;
    // Started on the same store: no second key, the same refresh secret.
    assert_eq!(fx.authority.list_signing_keys().await.unwrap().len(), 1);
    let pair = fx.issue("acme", "alice").await;
    validate(&replica, &anonymous(), &pair.access_token).unwrap();
    let pair = replica
        .refresh(
            &anonymous(),
            RefreshRequest {
                refresh_token: pair.refresh_token,
                device: Device::default(),
            },
        )
        .await
        .unwrap();
    let other = fx.issue("acme", "bob").await;

    fx.revoke(&anonymous(), "acme", session_target(&pair), "")
        .await
        .unwrap();
    // Until it syncs, the other replica still accepts the token.
    validate(&replica, &anonymous(), &pair.access_token).unwrap();
    replica.sync_from_store().await.unwrap();
    assert_err!(
        validate(&replica, &anonymous(), &pair.access_token),
        Error::SessionRevoked
    );
    validate(&replica, &anonymous(), &other.access_token).unwrap();

    // A later revocation is read from the cursor.
    fx.revoke(&anonymous(), "acme", session_target(&other), "")
        .await
        .unwrap();
    replica.sync_from_store().await.unwrap();
    assert_err!(
        validate(&replica, &anonymous(), &other.access_token),
        Error::SessionRevoked
    );

    // A replica started later loads recent revocations at once.
    let late = fx.replica().await;
    assert_err!(
        validate(&late, &anonymous(), &pair.access_token),
        Error::SessionRevoked
    );
    assert!(late.state_age().is_some());
}

#[tokio::test]
async fn a_replica_learns_of_a_key_another_one_rotated_by_sync() {
    let fx = Fixture::new().await;
    let replica = fx.replica().await;
    let new = fx
        .authority
        .rotate_signing_key(&anonymous(), None, None)
        .await
        .unwrap();
    assert_eq!(replica.validator().keys().public_keys().len(), 1);
    replica.sync_from_store().await.unwrap();
    assert_eq!(replica.validator().keys().public_keys().len(), 2);
    fx.advance(PUBLISH_AHEAD);
    let pair = replica
        .issue(
            &anonymous(),
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                ..IssueRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, new.kid);
}

#[tokio::test]
async fn invalid_requests_are_refused_before_the_store() {
    let fx = Fixture::new().await;
    fx.store.set_unavailable(true);
    let a = anonymous();
    for (tenant, subject) in [("", "alice"), ("a b", "alice"), ("acme", "")] {
        assert_err!(
            fx.try_issue(&a, tenant, subject).await,
            Error::InvalidArgument { .. }
        );
    }
    let bad_ip = fx
        .authority
        .issue(
            &a,
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                device: Device {
                    ip: "not an ip".into(),
                    ..Device::default()
                },
                ..IssueRequest::default()
            },
        )
        .await;
    assert_err!(
        bad_ip,
        Error::InvalidArgument {
            field: "device.ip",
            ..
        }
    );
    fx.store.set_unavailable(false);
    assert_eq!(fx.store.sessions(), []);
}
