//! The `Admin` gRPC service: signing-key rotation, withdrawal and listing,
//! and the audit trail.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::access_layer::caller_of;
use super::convert;
use super::status::to_status;
use crate::domain::audit_read::{AuditRecord, ListAuditEventsRequest};
use crate::domain::{Authority, Error, KeyStatus};
use crate::proto as pb;
use crate::proto::admin_server::Admin;
use crate::verify::clock::duration_millis;
use crate::verify::keys::KeyAlgorithm;

pub struct AdminService {
    authority: Arc<Authority>,
}

impl AdminService {
    pub fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::SigningKey>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let algorithm =
            match r.algorithm.as_str() {
                "" => None,
                name => Some(KeyAlgorithm::parse(name).ok_or_else(|| {
                    to_status(Error::invalid("algorithm", "must be EdDSA or ES256"))
                })?),
            };
        let activate_in = match r.activate_in {
            None => None,
            Some(d) => {
                let d = std::time::Duration::try_from(d).map_err(|_| {
                    to_status(Error::invalid("activate_in", "must not be negative"))
                })?;
                Some(duration_millis(d))
            }
        };
        let key = self
            .authority
            .within_budget(
                self.authority
                    .rotate_signing_key(&caller, algorithm, activate_in),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::signing_key(key)))
    }

    async fn withdraw_signing_key(
        &self,
        request: Request<pb::WithdrawSigningKeyRequest>,
    ) -> Result<Response<pb::WithdrawSigningKeyResponse>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let withdrawal = self
            .authority
            .withdraw_signing_key(&caller, &r.kid, &r.reason)
            .await
            .map_err(to_status)?;
        let keys = self
            .authority
            .within_budget(self.authority.list_signing_keys())
            .await
            .map_err(to_status)?;
        let info = |kid: Option<&str>| {
            keys.iter()
                .find(|k| Some(k.kid.as_str()) == kid)
                .cloned()
                .map(convert::signing_key)
        };
        let signing = withdrawal.successor.as_deref().or_else(|| {
            keys.iter()
                .find(|k| k.status == KeyStatus::Active)
                .map(|k| k.kid.as_str())
        });
        Ok(Response::new(pb::WithdrawSigningKeyResponse {
            withdrawn: info(Some(&withdrawal.kid)),
            signing: info(signing),
            signing_key_generated: withdrawal.successor_generated,
            already_withdrawn: withdrawal.already_withdrawn,
        }))
    }

    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        let keys = self
            .authority
            .within_budget(self.authority.list_signing_keys())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListSigningKeysResponse {
            keys: keys.into_iter().map(convert::signing_key).collect(),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let page = self
            .authority
            .list_audit_events(
                &caller,
                ListAuditEventsRequest {
                    tenant_id: r.tenant_id,
                    subject: r.subject,
                    session_id: r.session_id,
                    kinds: r.kinds,
                    since: r.since.as_ref().map(convert::millis_of),
                    until: r.until.as_ref().map(convert::millis_of),
                    page_size: r.page_size,
                    page_token: r.page_token,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.events.into_iter().map(audit_event).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

fn audit_event(e: AuditRecord) -> pb::AuditEvent {
    pb::AuditEvent {
        caller: e.acting_caller().unwrap_or_default().to_owned(),
        id: e.id,
        kind: e.kind,
        occurred_at: convert::timestamp(e.occurred_at),
        tenant_id: e.tenant_id,
        subject: e.subject,
        session_id: e.session_id.unwrap_or_default(),
        detail: e.detail.unwrap_or_default(),
    }
}
