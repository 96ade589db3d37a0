//! The domain's ports, implemented by `Store`: each method converts the
//! store's error into the domain's (unavailable or failed).
use async_trait::async_trait;
use token_authority_domain::audit::AuditEvent;
use token_authority_domain::audit_read::{AuditQuery, AuditRecord};
use token_authority_domain::keys::withdrawal::WithdrawalPlan;
use token_authority_domain::keys::KeyVersion;
use token_authority_domain::ports::{
    AddKeyIf, AuditLog, Inserted, KeyStore, Reseal, Resealed, RevocationLog, RevocationPage,
    RevocationsFrom, RevokeOutcome, RevokeSession, RewrapAudit, SessionCap, SessionStore,
    StoreResult, StoredKey, WithdrawKey,
};
use token_authority_domain::rotation::Rotation;
use token_authority_domain::session::Session;
use token_authority_verify::clock::Millis;

use super::Store;

#[async_trait]
impl SessionStore for Store {
    #[tracing::instrument(name = "db.insert_session", level = "info", skip_all)]
    async fn insert_session(
        &self,
        session: &Session,
        cap: Option<SessionCap>,
    ) -> StoreResult<Inserted> {
        Ok(Store::insert_session(self, session, cap).await?)
    }

    #[tracing::instrument(name = "db.rotate", level = "info", skip_all)]
    async fn rotate(&self, rotation: &Rotation<'_>, audit: bool) -> StoreResult<Option<Session>> {
        Ok(Store::rotate(self, rotation, audit).await?)
    }

    #[tracing::instrument(name = "db.session_and_store_now", level = "info", skip_all)]
    async fn session_and_store_now(
        &self,
        id: &str,
        now: Millis,
    ) -> StoreResult<Option<(Session, Millis)>> {
        Ok(self.session_and_db_now(id, now).await?)
    }

    #[tracing::instrument(name = "db.revoke_session", level = "info", skip_all)]
    async fn revoke_session(&self, target: RevokeSession<'_>) -> StoreResult<RevokeOutcome> {
        Ok(Store::revoke_session(self, target).await?)
    }

    async fn revoke_subject(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        reason: &str,
    ) -> StoreResult<Vec<String>> {
        Ok(Store::revoke_subject(self, tenant_id, subject, now, reason).await?)
    }

    async fn live_sessions(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<Session>> {
        Ok(Store::live_sessions(self, tenant_id, subject, now, after, limit).await?)
    }
}

#[async_trait]
impl RevocationLog for Store {
    async fn revocations(&self, from: RevocationsFrom) -> StoreResult<RevocationPage> {
        Ok(Store::revocations(self, from).await?)
    }
}

#[async_trait]
impl KeyStore for Store {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        Ok(Store::signing_keys(self).await?)
    }

    async fn signing_key_versions(&self) -> StoreResult<Vec<KeyVersion>> {
        Ok(Store::signing_key_versions(self).await?)
    }

    async fn add_signing_key(
        &self,
        key: StoredKey,
        condition: AddKeyIf,
        by: &str,
    ) -> StoreResult<Option<Millis>> {
        Ok(Store::add_signing_key(self, key, condition, by).await?)
    }

    async fn newest_key_activation(&self) -> StoreResult<Option<Millis>> {
        Ok(Store::newest_key_activation(self).await?)
    }

    async fn replace_private_key(&self, kid: &str, sealed: Vec<u8>) -> StoreResult<()> {
        Ok(Store::replace_private_key(self, kid, sealed).await?)
    }

    async fn withdraw_signing_key(&self, request: WithdrawKey) -> StoreResult<WithdrawalPlan> {
        Ok(Store::withdraw_signing_key(self, request).await?)
    }

    async fn secret_or_insert(
        &self,
        name: &str,
        candidate: Vec<u8>,
        now: Millis,
    ) -> StoreResult<Vec<u8>> {
        Ok(Store::secret_or_insert(self, name, candidate, now).await?)
    }

    async fn secret_values(&self) -> StoreResult<Vec<Vec<u8>>> {
        Ok(Store::secret_values(self).await?)
    }

    async fn replace_secret(&self, name: &str, old: &[u8], new: Vec<u8>) -> StoreResult<()> {
        Ok(Store::replace_secret(self, name, old, new).await?)
    }

    #[tracing::instrument(name = "db.reseal_all", level = "info", skip_all)]
    async fn reseal_all(
        &self,
        reseal: &Reseal<'_>,
        audit: RewrapAudit<'_>,
    ) -> token_authority_domain::Result<Resealed> {
        Store::reseal_all(self, reseal, audit).await
    }
}

#[async_trait]
impl AuditLog for Store {
    async fn record(&self, events: &[AuditEvent]) -> StoreResult<()> {
        Ok(self.record_audit_events(events).await?)
    }

    async fn read_audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Ok(Store::read_audit_events(self, query).await?)
    }
}
