//! The `TokenAuthority` gRPC service: decode, call the domain, encode. In
//! sidecar mode there is no authority behind it: only the validation RPCs
//! are served, the others answer UNIMPLEMENTED.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as signal;
use tonic::{Request, Response, Status};

use super::access_layer::{caller_of, AccessControl};
use super::convert;
use super::status::to_status;
use super::watch::{self, WatchStream};
use crate::domain::{model, Authority, Error};
use crate::proto as pb;
use crate::proto::token_authority_server::TokenAuthority;
use crate::verify::caller::Caller;
use crate::verify::clock::duration_millis;
use crate::verify::model as verify_model;
use crate::verify::revocation_feed::Cursor;
use crate::verify::validation::TokenValidation;

pub struct TokenAuthorityService {
    /// `None` in sidecar mode.
    authority: Option<Arc<Authority>>,
    validation: Arc<dyn TokenValidation>,
    heartbeat: Duration,
    /// Turns true when the server shuts down; ends WatchRevocations streams.
    stopping: signal::Receiver<bool>,
    access: Arc<AccessControl>,
}

impl TokenAuthorityService {
    pub fn authority(
        authority: Arc<Authority>,
        access: Arc<AccessControl>,
        heartbeat: Duration,
        stopping: signal::Receiver<bool>,
    ) -> Self {
        Self {
            validation: authority.clone(),
            authority: Some(authority),
            heartbeat,
            stopping,
            access,
        }
    }

    pub fn validation_only(
        validation: Arc<dyn TokenValidation>,
        access: Arc<AccessControl>,
        heartbeat: Duration,
        stopping: signal::Receiver<bool>,
    ) -> Self {
        Self {
            authority: None,
            validation,
            heartbeat,
            stopping,
            access,
        }
    }

    /// The status for a domain error, auditing refusals.
    fn failed(&self, caller: &Caller, method: &str, error: Error) -> Status {
        self.access.refused_by_domain(caller, method, &error);
        to_status(error)
    }

    fn authority_or_unimplemented(&self) -> Result<&Authority, Status> {
        self.authority.as_deref().ok_or_else(|| {
            Status::unimplemented(
                "this is a validation sidecar: call the token authority for Issue, Refresh, Revoke, ListSessions and Exchange",
            )
        })
    }
}

#[tonic::async_trait]
impl TokenAuthority for TokenAuthorityService {
    async fn issue(
        &self,
        request: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let authority = self.authority_or_unimplemented()?;
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let pair = authority
            .issue(
                &caller,
                model::IssueRequest {
                    tenant_id: r.tenant_id,
                    subject: r.subject,
                    audience: r.audience,
                    scopes: r.scopes,
                    device: convert::device_in(r.device),
                    extra_claims: r
                        .extra_claims
                        .map(convert::struct_to_json)
                        .unwrap_or_default(),
                    binding: r.binding.map(convert::binding_in),
                },
            )
            .await
            .map_err(|e| self.failed(&caller, "Issue", e))?;
        Ok(Response::new(pb::IssueResponse {
            tokens: Some(convert::token_pair(pair)),
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let authority = self.authority_or_unimplemented()?;
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let pair = authority
            .refresh(
                &caller,
                model::RefreshRequest {
                    refresh_token: r.refresh_token,
                    device: convert::device_in(r.device),
                    binding: r.binding.map(convert::binding_in),
                },
            )
            .await
            .map_err(|e| self.failed(&caller, "Refresh", e))?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(convert::token_pair(pair)),
        }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        use pb::revoke_request::Target;
        let authority = self.authority_or_unimplemented()?;
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let target = r.target.map(|t| match t {
            Target::RefreshToken(t) => model::RevokeTarget::RefreshToken(t),
            Target::SessionId(id) => model::RevokeTarget::Session(id),
            Target::AllSessions(s) => model::RevokeTarget::AllSessions { subject: s.subject },
        });
        let revoked_sessions = authority
            .revoke(
                &caller,
                model::RevokeRequest {
                    tenant_id: r.tenant_id,
                    target,
                    reason: r.reason,
                },
            )
            .await
            .map_err(|e| self.failed(&caller, "Revoke", e))?;
        Ok(Response::new(pb::RevokeResponse { revoked_sessions }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let authority = self.authority_or_unimplemented()?;
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let page = authority
            .list_sessions(
                &caller,
                model::ListSessionsRequest {
                    tenant_id: r.tenant_id,
                    subject: r.subject,
                    page_size: r.page_size,
                    page_token: r.page_token,
                },
            )
            .await
            .map_err(|e| self.failed(&caller, "ListSessions", e))?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.sessions.into_iter().map(convert::session).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn validate(
        &self,
        request: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let validated = self
            .validation
            .validate(
                &caller,
                &verify_model::ValidateRequest {
                    access_token: r.access_token,
                    expected_audience: r.expected_audience,
                    expected_tenant_id: r.expected_tenant_id,
                    presenter_certificate_thumbprint: r.presenter_certificate_thumbprint,
                    binding_checked_by_caller: false,
                },
            )
            .map_err(|e| self.failed(&caller, "Validate", e))?;
        Ok(Response::new(pb::ValidateResponse {
            valid: true,
            claims: Some(convert::claims(validated)),
        }))
    }

    async fn exchange(
        &self,
        request: Request<pb::ExchangeRequest>,
    ) -> Result<Response<pb::ExchangeResponse>, Status> {
        let authority = self.authority_or_unimplemented()?;
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let requested_lifetime = r
            .requested_lifetime
            .map(|d| {
                std::time::Duration::try_from(d)
                    .map(duration_millis)
                    .map_err(|_| {
                        to_status(Error::invalid("requested_lifetime", "must be positive"))
                    })
            })
            .transpose()?;
        let exchanged = authority
            .exchange(
                &caller,
                model::ExchangeRequest {
                    subject_token: r.subject_token,
                    audience: r.audience,
                    scopes: r.scopes,
                    requested_lifetime,
                },
            )
            .await
            .map_err(|e| self.failed(&caller, "Exchange", e))?;
        Ok(Response::new(convert::exchanged(exchanged)))
    }

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::JsonWebKeySet>, Status> {
        let keys = self.validation.validator().keys();
        Ok(Response::new(convert::jwk_set(keys.public_keys())))
    }

    type WatchRevocationsStream = WatchStream;

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let r = request.into_inner();
        let cursor = if r.cursor.is_empty() {
            None
        } else {
            if r.cursor.len() > 64 {
                return Err(to_status(Error::invalid("cursor", "is not a cursor")));
            }
            // An unknown cursor is not an error: the stream starts over.
            Cursor::decode(&r.cursor)
        };
        Ok(Response::new(watch::stream(
            self.validation.clone(),
            cursor,
            self.heartbeat,
            self.stopping.clone(),
        )))
    }
}
