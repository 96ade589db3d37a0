//! The storage ports in memory, for fast tests of the rules: the same
//! semantics as the SQL store (`token-authority-storage`), with one mutex
//! standing in for its transactions. Every write that changes a session
//! records its audit event under the same lock, so a test sees both or
//! neither. Built for this crate's tests and with the `memory-store`
//! feature; never used by the server.
//!
//! Two things a test can set that a database only does by accident:
//! - the store's clock ([`MemoryStore::with_clock`]), which stamps
//!   `rotated_at` and is what `session_and_store_now` returns, as
//!   PostgreSQL's `now()` does; by default it is the service's `now`
//!   passed in, as on SQLite;
//! - unavailability ([`MemoryStore::set_unavailable`]): every call then
//!   fails with [`StorageError::unavailable`] and changes nothing.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use token_authority_verify::clock::{Millis, SharedClock};
use token_authority_verify::StorageError;

use crate::audit::{AuditEvent, AuditKind};
use crate::audit_read::{AuditQuery, AuditRecord};
use crate::keys::withdrawal::{self, KeyRow, Successor, WithdrawalPlan};
use crate::keys::KeyVersion;
use crate::ports::{
    AddKeyIf, AuditLog, Inserted, KeyStore, Reseal, Resealed, RevocationLog, RevocationPage,
    RevocationsFrom, RevokeOutcome, RevokeSession, RewrapAudit, SealedRow, SessionCap,
    SessionStore, StoreResult, StoredKey, WithdrawKey,
};
use crate::rotation::Rotation;
use crate::session::Session;

/// Sessions, keys, secrets, audit events and the revocation counter in
/// memory. See the module documentation.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// `None`: the store's clock is the service's `now` of each call.
    clock: Mutex<Option<SharedClock>>,
    unavailable: AtomicBool,
}

#[derive(Default)]
struct State {
    /// By id: a UUIDv7, so in creation order.
    sessions: BTreeMap<String, Session>,
    /// In insertion order.
    keys: Vec<StoredKey>,
    /// Name → (value, created_at).
    secrets: BTreeMap<String, (Vec<u8>, Millis)>,
    /// In the order they were written.
    audit: Vec<AuditEvent>,
    /// The last `revocation_seq` handed out (SQLite's `revocation_counter`).
    revocation_seq: i64,
}

impl State {
    /// The position of a revoking "transaction": one per call that revokes,
    /// shared by every session it revokes.
    fn next_revocation_seq(&mut self) -> i64 {
        self.revocation_seq += 1;
        self.revocation_seq
    }

    /// Live sessions of a subject at `now`, in id order.
    fn live_of<'a>(
        &'a self,
        tenant_id: &'a str,
        subject: &'a str,
        now: Millis,
    ) -> impl Iterator<Item = &'a Session> + 'a {
        self.sessions
            .values()
            .filter(move |s| s.tenant_id == tenant_id && s.subject == subject && s.is_live(now))
    }

    fn revoke(&mut self, id: &str, now: Millis, reason: &str, seq: i64) -> Option<&Session> {
        let session = self
            .sessions
            .get_mut(id)
            .filter(|s| s.revoked_at.is_none())?;
        session.revoked_at = Some(now);
        session.revoke_reason = Some(reason.to_owned());
        session.revocation_seq = Some(seq);
        Some(session)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `clock` as the store's clock (PostgreSQL's `now()`), which may
    /// differ from the service's.
    pub fn with_clock(self, clock: SharedClock) -> Self {
        self.set_clock(Some(clock));
        self
    }

    /// Replaces the store's clock; `None`: the service's `now` of each call.
    pub fn set_clock(&self, clock: Option<SharedClock>) {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = clock;
    }

    /// While set, every call fails with `StorageError::unavailable` and
    /// changes nothing (a database that is down).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Every audit event, oldest first.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        self.lock().audit.clone()
    }

    /// Audit events of one kind, oldest first.
    pub fn audit_events_of_kind(&self, kind: AuditKind) -> Vec<AuditEvent> {
        self.lock()
            .audit
            .iter()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }

    /// Every session, live or not, in id (= creation) order.
    pub fn sessions(&self) -> Vec<Session> {
        self.lock().sessions.values().cloned().collect()
    }

    pub fn session(&self, id: &str) -> Option<Session> {
        self.lock().sessions.get(id).cloned()
    }

    /// The last `revocation_seq` handed out (0: none yet).
    pub fn last_revocation_seq(&self) -> i64 {
        self.lock().revocation_seq
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, unless the store is switched to unavailable.
    fn available(&self) -> StoreResult<MutexGuard<'_, State>> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StorageError::unavailable("memory store: unavailable"));
        }
        Ok(self.lock())
    }

    fn store_now(&self, service_now: Millis) -> Millis {
        self.clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(service_now, |clock| clock.now_millis())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn insert_session(
        &self,
        session: &Session,
        cap: Option<SessionCap>,
    ) -> StoreResult<Inserted> {
        let mut state = self.available()?;
        if state.sessions.contains_key(&session.id) {
            // The primary key: the SQL insert fails and rolls back.
            return Err(StorageError::failed(format!(
                "memory store: session {} exists",
                session.id
            )));
        }
        let mut evicted = Vec::new();
        if let Some(cap) = cap {
            // Least recently used first.
            let mut live: Vec<(Millis, String, Millis)> = state
                .live_of(&session.tenant_id, &session.subject, cap.now)
                .map(|s| (s.last_used_at, s.id.clone(), s.created_at))
                .collect();
            live.sort();
            let excess = (live.len() as u64 + 1).saturating_sub(cap.max) as usize;
            if excess > 0 {
                let (victims, young): (Vec<_>, Vec<_>) = live
                    .iter()
                    .partition(|(_, _, created)| *created < cap.evictable_before);
                if victims.len() < excess {
                    let oldest_young = young.iter().map(|(_, _, created)| *created).min();
                    let evictable_at = oldest_young.unwrap_or(cap.evictable_before)
                        + (cap.now - cap.evictable_before)
                        + 1;
                    return Ok(Inserted::AtCapacity { evictable_at });
                }
                let reason = format!("evicted: more than {} sessions", cap.max);
                let seq = state.next_revocation_seq();
                for (_, id, _) in &victims[..excess] {
                    if state.revoke(id, cap.now, &reason, seq).is_some() {
                        evicted.push(id.clone());
                    }
                }
                for id in &evicted {
                    state.audit.push(AuditEvent {
                        at: cap.now,
                        kind: AuditKind::Evicted,
                        tenant_id: session.tenant_id.clone(),
                        subject: session.subject.clone(),
                        session_id: Some(id.clone()),
                        detail: Some(format!("{reason}; for session {}", session.id)),
                    });
                }
            }
        }
        state.audit.push(AuditEvent {
            at: session.created_at,
            kind: AuditKind::Issued,
            tenant_id: session.tenant_id.clone(),
            subject: session.subject.clone(),
            session_id: Some(session.id.clone()),
            detail: Some(format!("by {}", session.client_id)),
        });
        state.sessions.insert(session.id.clone(), session.clone());
        Ok(Inserted::Stored { evicted })
    }

    async fn rotate(&self, rotation: &Rotation<'_>, audit: bool) -> StoreResult<Option<Session>> {
        let rotated_at = self.store_now(rotation.now);
        let mut state = self.available()?;
        let Some(session) = state
            .sessions
            .get_mut(rotation.session_id)
            .filter(|s| rotation.applies_to(s))
        else {
            return Ok(None);
        };
        rotation.apply(session, rotated_at);
        let rotated = session.clone();
        if audit {
            state.audit.push(AuditEvent {
                at: rotation.now,
                kind: AuditKind::Refreshed,
                tenant_id: rotated.tenant_id.clone(),
                subject: rotated.subject.clone(),
                session_id: Some(rotated.id.clone()),
                detail: Some(format!("generation {}", rotated.generation)),
            });
        }
        Ok(Some(rotated))
    }

    async fn session_and_store_now(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(Session, Millis)>> {
        let store_now = self.store_now(now);
        let state = self.available()?;
        Ok(state.sessions.get(id).map(|s| (s.clone(), store_now)))
    }

    async fn revoke_session(&self, target: RevokeSession<'_>) -> StoreResult<RevokeOutcome> {
        let RevokeSession {
            id,
            now,
            kind,
            reason,
            ..
        } = target;
        let mut state = self.available()?;
        let Some(session) = state.sessions.get(id) else {
            return Ok(RevokeOutcome::NotFound);
        };
        if let Some(refusal) = target.refusal(&session.tenant_id) {
            return Ok(refusal);
        }
        if session.revoked_at.is_some() {
            // The SQL transaction rolls back: no position is used up.
            return Ok(RevokeOutcome::AlreadyRevoked);
        }
        let seq = state.next_revocation_seq();
        let Some(session) = state.revoke(id, now, reason, seq).cloned() else {
            return Ok(RevokeOutcome::AlreadyRevoked);
        };
        state.audit.push(AuditEvent {
            at: now,
            kind,
            tenant_id: session.tenant_id,
            subject: session.subject,
            session_id: Some(session.id),
            detail: Some(reason.to_owned()),
        });
        Ok(RevokeOutcome::Revoked)
    }

    async fn revoke_subject(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        reason: &str,
    ) -> StoreResult<Vec<String>> {
        let mut state = self.available()?;
        let candidates: Vec<String> = state
            .live_of(tenant_id, subject, now)
            .map(|s| s.id.clone())
            .collect();
        // Like SQLite's counter, incremented by the revoking transaction
        // even when it finds nothing to revoke.
        let seq = state.next_revocation_seq();
        let mut revoked = Vec::with_capacity(candidates.len());
        for id in candidates {
            if state.revoke(&id, now, reason, seq).is_some() {
                state.audit.push(AuditEvent {
                    at: now,
                    kind: AuditKind::Revoked,
                    tenant_id: tenant_id.to_owned(),
                    subject: subject.to_owned(),
                    session_id: Some(id.clone()),
                    detail: Some(reason.to_owned()),
                });
                revoked.push(id);
            }
        }
        Ok(revoked)
    }

    async fn live_sessions(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<Session>> {
        let state = self.available()?;
        Ok(state
            .live_of(tenant_id, subject, now)
            .filter(|s| after.is_none_or(|after| s.id.as_str() > after))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl RevocationLog for MemoryStore {
    async fn revocations(&self, from: RevocationsFrom) -> StoreResult<RevocationPage> {
        let state = self.available()?;
        let mut revoked: Vec<&Session> = state
            .sessions
            .values()
            .filter(|s| match from {
                RevocationsFrom::Cursor(cursor) => s.revocation_seq.is_some_and(|q| q >= cursor),
                RevocationsFrom::Since(since) => s.revoked_at.is_some_and(|at| at >= since),
            })
            .collect();
        revoked.sort_by_key(|s| s.revocation_seq);
        Ok(RevocationPage {
            session_ids: revoked.into_iter().map(|s| s.id.clone()).collect(),
            cursor: state.revocation_seq + 1,
        })
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let state = self.available()?;
        let mut keys = state.keys.clone();
        keys.sort_by(|a, b| (b.activates_at, &b.kid).cmp(&(a.activates_at, &a.kid)));
        Ok(keys)
    }

    async fn signing_key_versions(&self) -> StoreResult<Vec<KeyVersion>> {
        let state = self.available()?;
        Ok(state
            .keys
            .iter()
            .map(|k| KeyVersion {
                kid: k.kid.clone(),
                activates_at: k.activates_at,
                retired_at: k.retired_at,
                withdrawn_at: k.withdrawn_at,
            })
            .collect())
    }

    async fn add_signing_key(
        &self,
        mut key: StoredKey,
        condition: AddKeyIf,
        by: &str,
    ) -> StoreResult<Option<Millis>> {
        let mut state = self.available()?;
        let newest = newest_live_activation(&state.keys);
        let add = match condition {
            AddKeyIf::NoKeys => newest.is_none(),
            AddKeyIf::NewestActivatedBefore(at) => newest.is_none_or(|n| n < at),
            AddKeyIf::Always => true,
        };
        if !add {
            return Ok(None);
        }
        if state.keys.iter().any(|k| k.kid == key.kid) {
            return Err(StorageError::failed(format!(
                "memory store: key {} exists",
                key.kid
            )));
        }
        if let Some(newest) = newest {
            key.activates_at = key.activates_at.max(newest + 1);
        }
        let activates_at = key.activates_at;
        for older in state.keys.iter_mut().filter(|k| {
            k.retired_at.is_none() && k.withdrawn_at.is_none() && k.activates_at <= activates_at
        }) {
            older.retired_at = Some(activates_at);
        }
        state.audit.push(AuditEvent {
            at: key.created_at,
            kind: AuditKind::KeyRotated,
            tenant_id: String::new(),
            subject: by.to_owned(),
            session_id: None,
            detail: Some(format!(
                "kid {} ({}) signs from {activates_at}",
                key.kid, key.algorithm
            )),
        });
        state.keys.push(key);
        Ok(Some(activates_at))
    }

    async fn newest_key_activation(&self) -> StoreResult<Option<Millis>> {
        let state = self.available()?;
        Ok(newest_live_activation(&state.keys))
    }

    async fn withdraw_signing_key(&self, request: WithdrawKey) -> StoreResult<WithdrawalPlan> {
        let mut state = self.available()?;
        let rows: Vec<KeyRow> = state
            .keys
            .iter()
            .map(|k| KeyRow {
                kid: k.kid.clone(),
                activates_at: k.activates_at,
                retired_at: k.retired_at,
                withdrawn_at: k.withdrawn_at,
            })
            .collect();
        let plan = withdrawal::plan(&rows, &request.kid, request.now);
        let WithdrawalPlan::Withdraw { successor, retire } = &plan else {
            return Ok(plan);
        };
        for key in state.keys.iter_mut() {
            if key.kid == request.kid {
                key.withdrawn_at = Some(request.now);
                key.private_key.clear();
            }
            if let Some((_, at)) = retire.iter().find(|(kid, _)| *kid == key.kid) {
                key.retired_at = Some(*at);
            }
            if let Some(Successor::Promoted { kid, activates_at }) = successor {
                if *kid == key.kid {
                    key.activates_at = *activates_at;
                }
            }
        }
        if let Some(Successor::Generated { activates_at }) = successor {
            state.keys.push(StoredKey {
                activates_at: *activates_at,
                ..request.replacement.clone()
            });
        }
        state.audit.push(AuditEvent {
            at: request.now,
            kind: AuditKind::KeyWithdrawn,
            tenant_id: String::new(),
            subject: request.by.clone(),
            session_id: None,
            detail: Some(withdrawal::audit_detail(
                &request.kid,
                &request.reason,
                &plan,
                &request.replacement.kid,
            )),
        });
        Ok(plan)
    }

    async fn replace_private_key(&self, kid: &str, sealed: Vec<u8>) -> StoreResult<()> {
        let mut state = self.available()?;
        if let Some(key) = state.keys.iter_mut().find(|k| k.kid == kid) {
            key.private_key = sealed;
        }
        Ok(())
    }

    async fn secret_or_insert(
        &self,
        name: &str,
        candidate: Vec<u8>,
        now: Millis,
    ) -> StoreResult<Vec<u8>> {
        let mut state = self.available()?;
        let (value, _) = state
            .secrets
            .entry(name.to_owned())
            .or_insert((candidate, now));
        Ok(value.clone())
    }

    async fn secret_values(&self) -> StoreResult<Vec<Vec<u8>>> {
        let state = self.available()?;
        Ok(state.secrets.values().map(|(v, _)| v.clone()).collect())
    }

    async fn replace_secret(&self, name: &str, old: &[u8], new: Vec<u8>) -> StoreResult<()> {
        let mut state = self.available()?;
        if let Some((value, _)) = state.secrets.get_mut(name).filter(|(v, _)| v == old) {
            *value = new;
        }
        Ok(())
    }

    async fn reseal_all(
        &self,
        reseal: &Reseal<'_>,
        audit: RewrapAudit<'_>,
    ) -> crate::error::Result<Resealed> {
        let mut state = self.available()?;
        let mut keys = Vec::new();
        for (i, key) in state.keys.iter().enumerate() {
            if let Some(new) = reseal(SealedRow::SigningKey { kid: &key.kid }, &key.private_key)? {
                keys.push((i, new));
            }
        }
        let mut secrets = Vec::new();
        for (name, (value, _)) in &state.secrets {
            if let Some(new) = reseal(SealedRow::Secret { name }, value)? {
                secrets.push((name.clone(), new));
            }
        }
        let resealed = Resealed {
            keys: keys.len() as u64,
            secrets: secrets.len() as u64,
        };
        for (i, new) in keys {
            state.keys[i].private_key = new;
        }
        for (name, new) in secrets {
            if let Some((value, _)) = state.secrets.get_mut(&name) {
                *value = new;
            }
        }
        state.audit.push(AuditEvent {
            at: audit.at,
            kind: AuditKind::KekRewrapped,
            tenant_id: String::new(),
            subject: audit.by.to_owned(),
            session_id: None,
            detail: Some(audit.detail(resealed)),
        });
        Ok(resealed)
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn record(&self, events: &[AuditEvent]) -> StoreResult<()> {
        let mut state = self.available()?;
        state.audit.extend_from_slice(events);
        Ok(())
    }

    async fn read_audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let state = self.available()?;
        // The position in the log stands in for the table's id.
        let mut records: Vec<AuditRecord> = state
            .audit
            .iter()
            .zip(1_i64..)
            .map(|(e, id)| AuditRecord {
                id,
                occurred_at: e.at,
                kind: e.kind.as_str().to_owned(),
                tenant_id: e.tenant_id.clone(),
                subject: e.subject.clone(),
                session_id: e.session_id.clone(),
                detail: e.detail.clone(),
            })
            .filter(|r| matches(query, r))
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse((r.occurred_at, r.id)));
        records.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
        Ok(records)
    }
}

fn matches(q: &AuditQuery, r: &AuditRecord) -> bool {
    q.tenants.as_ref().is_none_or(|t| t.contains(&r.tenant_id))
        && q.subject.as_ref().is_none_or(|s| *s == r.subject)
        && q.session_id
            .as_ref()
            .is_none_or(|s| r.session_id.as_ref() == Some(s))
        && (q.kinds.is_empty() || q.kinds.iter().any(|k| k.as_str() == r.kind))
        && q.since.is_none_or(|t| r.occurred_at >= t)
        && q.until.is_none_or(|t| r.occurred_at < t)
        && q.before
            .is_none_or(|b| (r.occurred_at, r.id) < (b.occurred_at, b.id))
}

#[cfg(test)]
mod tests;

fn newest_live_activation(keys: &[StoredKey]) -> Option<Millis> {
    keys.iter()
        .filter(|k| k.withdrawn_at.is_none())
        .map(|k| k.activates_at)
        .max()
}
