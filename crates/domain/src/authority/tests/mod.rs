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
        kek: crate::keys::kek::KekSources {
            file: Some(kek_file),
            ..Default::default()
        },
        max_sessions_per_subject: 0,
        refresh_per_session: None,
        exchange: Default::default(),
        binding_required_tenants: Vec::new(),
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
        certificate_thumbprint: None,
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
                    binding: None,
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
                    binding: None,
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
            ..Default::default()
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

mod audit_reads;
mod binding;
mod input;
mod keys;
mod listing_and_outages;
mod refresh;
mod revoke;
