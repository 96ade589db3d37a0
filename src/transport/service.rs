//! The `TokenAuthority` gRPC service: decode, call the domain, encode.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use super::status::to_status;
use crate::domain::{model, Authority};
use crate::proto as pb;
use crate::proto::token_authority_server::TokenAuthority;

pub struct TokenAuthorityService {
    authority: Arc<Authority>,
}

impl TokenAuthorityService {
    pub fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }
}

#[tonic::async_trait]
impl TokenAuthority for TokenAuthorityService {
    async fn issue(
        &self,
        request: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let r = request.into_inner();
        let pair = self
            .authority
            .issue(model::IssueRequest {
                tenant_id: r.tenant_id,
                subject: r.subject,
                audience: r.audience,
                scopes: r.scopes,
                device: convert::device_in(r.device),
                extra_claims: r
                    .extra_claims
                    .map(convert::struct_to_json)
                    .unwrap_or_default(),
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::IssueResponse {
            tokens: Some(convert::token_pair(pair)),
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let r = request.into_inner();
        let pair = self
            .authority
            .refresh(model::RefreshRequest {
                refresh_token: r.refresh_token,
                device: convert::device_in(r.device),
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(convert::token_pair(pair)),
        }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        use pb::revoke_request::Target;
        let r = request.into_inner();
        let target = r.target.map(|t| match t {
            Target::RefreshToken(t) => model::RevokeTarget::RefreshToken(t),
            Target::SessionId(id) => model::RevokeTarget::Session(id),
            Target::AllSessions(s) => model::RevokeTarget::AllSessions { subject: s.subject },
        });
        let revoked_sessions = self
            .authority
            .revoke(model::RevokeRequest {
                tenant_id: r.tenant_id,
                target,
                reason: r.reason,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RevokeResponse { revoked_sessions }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let r = request.into_inner();
        let page = self
            .authority
            .list_sessions(model::ListSessionsRequest {
                tenant_id: r.tenant_id,
                subject: r.subject,
                page_size: r.page_size,
                page_token: r.page_token,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.sessions.into_iter().map(convert::session).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn validate(
        &self,
        request: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let r = request.into_inner();
        let validated = self
            .authority
            .validate(&model::ValidateRequest {
                access_token: r.access_token,
                expected_audience: r.expected_audience,
                expected_tenant_id: r.expected_tenant_id,
            })
            .map_err(to_status)?;
        Ok(Response::new(pb::ValidateResponse {
            valid: true,
            claims: Some(convert::claims(validated)),
        }))
    }
}
