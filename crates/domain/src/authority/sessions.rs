//! Sessions: issue, rotate, revoke, list.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::time::Duration;
use uuid::Uuid;

use super::binding::{self, Binding};
use super::Authority;
use crate::audit::AuditKind;
use crate::caller::Caller;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::input;
use crate::model::*;
use crate::ports::{Inserted, RevokeOutcome, RevokeSession, SessionCap};
use crate::refresh_token::RefreshToken;
use crate::rotation::{diagnose, MissedRotation, Presented, Rotation};
use crate::session::Session;

impl Authority {
    pub async fn issue(&self, caller: &Caller, req: IssueRequest) -> Result<TokenPair> {
        self.within_budget(self.issue_now(caller, req)).await
    }

    /// Rotates a refresh token. See `refresh_token` for the token format.
    pub async fn refresh(&self, caller: &Caller, req: RefreshRequest) -> Result<TokenPair> {
        self.within_budget(self.refresh_now(caller, req)).await
    }

    /// Returns how many sessions this call revoked.
    pub async fn revoke(&self, caller: &Caller, req: RevokeRequest) -> Result<u32> {
        self.within_budget(self.revoke_now(caller, req)).await
    }

    pub async fn list_sessions(
        &self,
        caller: &Caller,
        req: ListSessionsRequest,
    ) -> Result<SessionPage> {
        self.within_budget(self.list_sessions_now(caller, req))
            .await
    }

    async fn issue_now(&self, caller: &Caller, req: IssueRequest) -> Result<TokenPair> {
        input::tenant_id("tenant_id", &req.tenant_id)?;
        input::name("subject", &req.subject, input::MAX_SUBJECT)?;
        input::name("audience", &req.audience, input::MAX_AUDIENCE)?;
        let scopes = input::scopes(&req.scopes)?;
        let device = checked_device(&req.device)?;
        input::extra_claims(&req.extra_claims)?;
        let binding = req
            .binding
            .as_ref()
            .map(|b| binding::checked(caller, b))
            .transpose()?;
        caller.check_tenant(&req.tenant_id)?;
        self.check_binding_policy(&req.tenant_id, binding.as_ref())?;

        let now = self.now();
        let session_id = Uuid::now_v7();
        let refresh_token = self.refresh_tokens.mint(session_id)?;
        let session = Session {
            id: session_id.to_string(),
            tenant_id: req.tenant_id,
            subject: req.subject,
            audience: req.audience,
            scopes: scopes.join(" "),
            extra_claims: (!req.extra_claims.is_empty())
                .then(|| serde_json::to_string(&req.extra_claims))
                .transpose()
                .map_err(|e| Error::Internal(e.to_string()))?,
            client_id: caller.name.to_string(),
            generation: 0,
            token_digest: refresh_token.digest().to_vec(),
            previous_digest: None,
            rotated_at: None,
            created_at: now,
            last_used_at: now,
            expires_at: now + self.settings.session_absolute_ttl,
            idle_expires_at: now + self.settings.session_idle_ttl,
            revoked_at: None,
            revoke_reason: None,
            revocation_seq: None,
            device_name: device.name,
            user_agent: device.user_agent,
            ip: device.ip,
            refresh_thumbprint: binding
                .as_ref()
                .filter(|b| b.refresh)
                .map(|b| b.thumbprint.clone()),
            certificate_thumbprint: binding.map(|b| b.thumbprint),
        };
        let cap = (self.settings.max_sessions_per_subject > 0).then(|| SessionCap {
            max: u64::from(self.settings.max_sessions_per_subject),
            now,
            evictable_before: now - self.settings.access_ttl - self.settings.clock_leeway,
        });
        let evicted = match self.store.insert_session(&session, cap).await? {
            Inserted::Stored { evicted } => evicted,
            Inserted::AtCapacity { evictable_at } => {
                let retry_after =
                    Duration::from_millis(u64::try_from(evictable_at - now).unwrap_or(0).max(1000));
                return Err(Error::SessionLimit { retry_after });
            }
        };
        if !evicted.is_empty() {
            tracing::info!(
                tenant_id = %session.tenant_id,
                evicted = evicted.len(),
                "session limit reached; least recently used sessions revoked"
            );
            self.mark_revoked(evicted.iter().map(String::as_str), now);
        }
        self.token_pair(&session, &refresh_token, now, None)
    }

    async fn refresh_now(&self, caller: &Caller, req: RefreshRequest) -> Result<TokenPair> {
        input::token(
            "refresh_token",
            &req.refresh_token,
            input::MAX_REFRESH_TOKEN,
        )?;
        let device = checked_device(&req.device)?;
        let requested = req
            .binding
            .as_ref()
            .map(|b| binding::checked(caller, b))
            .transpose()?;
        if requested.as_ref().is_some_and(|b| b.refresh) {
            return Err(Error::invalid(
                "binding.bind_refresh_token",
                "a refresh token is bound by Issue only",
            ));
        }
        let requested = requested.map(|Binding { thumbprint, .. }| thumbprint);
        let presented = self.refresh_tokens.parse(&req.refresh_token)?;
        let generation = i64::try_from(presented.generation)
            .ok()
            .filter(|g| *g < i64::MAX)
            .ok_or(Error::TokenInvalid)?;
        if let Some(limiter) = &self.refresh_limiter {
            limiter
                .check(&(caller.name.clone(), presented.session_id))
                .map_err(|retry_after| Error::RateLimited { retry_after })?;
        }
        let successor = self.refresh_tokens.successor(&presented);
        let digest = presented.digest();
        let now = self.now();
        let session_id = presented.session_id.to_string();
        let tenants = caller.tenant_filter();
        let rotation = Rotation {
            session_id: &session_id,
            tenants: tenants.as_deref(),
            from_generation: generation,
            from_digest: &digest,
            to_digest: &successor.digest(),
            now,
            idle_expires_at: now + self.settings.session_idle_ttl,
            device_name: non_empty(&device.name),
            user_agent: non_empty(&device.user_agent),
            ip: non_empty(&device.ip),
            presenter: caller.certificate_thumbprint.as_deref(),
            requested_binding: requested.as_deref(),
            binding_required: self.binding_required_tenants(),
        };
        if let Some(row) = self
            .store
            .rotate(&rotation, self.settings.audit_refreshes)
            .await?
        {
            return self.token_pair(&row, &successor, now, requested.as_deref());
        }

        // The rotation did not apply: find out why.
        let (session, store_now) = self
            .store
            .session_and_store_now(&session_id, now)
            .await?
            .ok_or(Error::SessionExpired)?;
        caller.check_tenant(&session.tenant_id)?;
        // Before the diagnosis: an attempt refused for its binding neither
        // rotated the session nor counts as a replay (a thief without the
        // certificate must not get the session revoked).
        if let Some(refusal) = rotation.binding_refusal(&session) {
            return Err(refusal);
        }
        let presented = Presented {
            generation,
            digest: &digest,
        };
        let retry_window = self.settings.refresh_retry_window;
        match diagnose(&session, presented, now, store_now, retry_window) {
            MissedRotation::RetryOfLastRotation => {
                self.token_pair(&session, &successor, now, requested.as_deref())
            }
            MissedRotation::Reused => {
                self.revoke_for_reuse(&session, now).await?;
                Err(Error::TokenReused)
            }
            MissedRotation::Revoked => Err(Error::SessionRevoked),
            MissedRotation::Expired => Err(Error::SessionExpired),
            MissedRotation::Invalid => Err(Error::TokenInvalid),
        }
    }

    async fn revoke_for_reuse(&self, session: &Session, now: Millis) -> Result<()> {
        tracing::warn!(
            tenant_id = %session.tenant_id,
            session_id = %session.id,
            generation = session.generation,
            "refresh token reuse detected; revoking session"
        );
        self.store
            .revoke_session(RevokeSession {
                id: &session.id,
                tenant_id: None,
                tenants: None,
                now,
                kind: AuditKind::ReuseDetected,
                reason: "refresh token reuse detected",
            })
            .await?;
        self.mark_revoked([session.id.as_str()], now);
        Ok(())
    }

    async fn revoke_now(&self, caller: &Caller, req: RevokeRequest) -> Result<u32> {
        input::optional_text("reason", &req.reason, input::MAX_REASON)?;
        let reason = if req.reason.is_empty() {
            format!("revoked by {}", caller.name)
        } else {
            format!("{} (by {})", req.reason, caller.name)
        };
        let now = self.now();
        let target = req.target.ok_or_else(|| {
            Error::invalid(
                "target",
                "one of refresh_token, session_id or all_sessions is required",
            )
        })?;
        let (session_id, tenant) = match target {
            RevokeTarget::AllSessions { subject } => {
                input::tenant_id("tenant_id", &req.tenant_id)?;
                input::name("all_sessions.subject", &subject, input::MAX_SUBJECT)?;
                caller.check_tenant(&req.tenant_id)?;
                let ids = self
                    .store
                    .revoke_subject(&req.tenant_id, &subject, now, &reason)
                    .await?;
                self.mark_revoked(ids.iter().map(String::as_str), now);
                return Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX));
            }
            RevokeTarget::Session(id) => {
                input::tenant_id("tenant_id", &req.tenant_id)?;
                let id = input::session_id("session_id", &id)?;
                caller.check_tenant(&req.tenant_id)?;
                (id, Some(req.tenant_id.as_str()))
            }
            RevokeTarget::RefreshToken(token) => {
                if !req.tenant_id.is_empty() {
                    input::tenant_id("tenant_id", &req.tenant_id)?;
                    caller.check_tenant(&req.tenant_id)?;
                }
                input::token("refresh_token", &token, input::MAX_REFRESH_TOKEN)?;
                let token: RefreshToken = self.refresh_tokens.parse(&token)?;
                (token.session_id, non_empty(&req.tenant_id))
            }
        };
        let id = session_id.to_string();
        let tenants = caller.tenant_filter();
        let target = RevokeSession {
            id: &id,
            tenant_id: tenant,
            tenants: tenants.as_deref(),
            now,
            kind: AuditKind::Revoked,
            reason: &reason,
        };
        match self.store.revoke_session(target).await? {
            RevokeOutcome::Revoked => {
                self.mark_revoked([id.as_str()], now);
                Ok(1)
            }
            RevokeOutcome::AlreadyRevoked => Ok(0),
            RevokeOutcome::NotFound => Err(Error::SessionNotFound),
            RevokeOutcome::TenantNotPermitted => Err(Error::TenantNotPermitted),
        }
    }

    async fn list_sessions_now(
        &self,
        caller: &Caller,
        req: ListSessionsRequest,
    ) -> Result<SessionPage> {
        input::tenant_id("tenant_id", &req.tenant_id)?;
        input::name("subject", &req.subject, input::MAX_SUBJECT)?;
        input::optional_text("page_token", &req.page_token, input::MAX_PAGE_TOKEN)?;
        caller.check_tenant(&req.tenant_id)?;
        let page_size = input::page_size(req.page_size);
        let after = decode_page_token(&req.page_token)?;
        let now = self.now();
        let mut rows = self
            .store
            .live_sessions(
                &req.tenant_id,
                &req.subject,
                now,
                after.as_deref(),
                u64::from(page_size) + 1,
            )
            .await?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last()
                .map(|r| encode_page_token(&r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(SessionPage {
            sessions: rows.into_iter().map(session_info).collect(),
            next_page_token,
        })
    }
}

fn checked_device(device: &Device) -> Result<Device> {
    input::optional_text("device.name", &device.name, input::MAX_DEVICE_NAME)?;
    input::optional_text(
        "device.user_agent",
        &device.user_agent,
        input::MAX_USER_AGENT,
    )?;
    Ok(Device {
        name: device.name.clone(),
        user_agent: device.user_agent.clone(),
        ip: input::ip("device.ip", &device.ip)?,
    })
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn session_info(row: Session) -> SessionInfo {
    SessionInfo {
        expires_at: row.ends_at(),
        refresh_count: u64::try_from(row.generation).unwrap_or(0),
        scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        session_id: row.id,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        device: Device {
            name: row.device_name,
            user_agent: row.user_agent,
            ip: row.ip,
        },
        audience: row.audience,
        client_id: row.client_id,
        refresh_token_bound: row.refresh_thumbprint.is_some(),
        certificate_thumbprint: row.certificate_thumbprint.unwrap_or_default(),
    }
}

fn encode_page_token(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

fn decode_page_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "is not a page token returned by ListSessions");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let id = String::from_utf8(bytes).map_err(|_| invalid())?;
    Uuid::try_parse(&id).map_err(|_| invalid())?;
    Ok(Some(id))
}
