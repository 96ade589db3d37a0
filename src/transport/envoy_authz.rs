//! Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`):
//! the bearer token of the HTTP request Envoy is deciding on is validated
//! like Validate. Allowed requests go upstream with the token's subject,
//! tenant, scopes and session as headers; denied ones get 401 or 403 with a
//! `WWW-Authenticate` challenge (RFC 6750). Per-route expectations come from
//! Envoy's `context_extensions`: `audience` and `tenant`. The decision itself
//! is `bearer_check`, shared with HTTP forward-auth (`/authz`).
//!
//! A certificate-bound token (RFC 8705) is checked against the client
//! certificate Envoy sends as `source.certificate` (URL-encoded PEM), which
//! it sends only with `include_peer_certificate: true` in the ext_authz
//! filter: without it, bound tokens are refused.
use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc;
use tonic::{Code, Request, Response, Status};

use super::access_layer::{caller_of, AccessControl};
use super::bearer_check::{self, Decision, Denied, Expected, Refusal};
use super::presenter_certificate::from_url_encoded_pem;
use super::status::to_status;
use crate::verify::validation::TokenValidation;

pub struct ExtAuthz {
    validation: Arc<dyn TokenValidation>,
    access: Arc<AccessControl>,
    realm: String,
}

impl ExtAuthz {
    pub fn new(
        validation: Arc<dyn TokenValidation>,
        access: Arc<AccessControl>,
        realm: String,
    ) -> Self {
        Self {
            validation,
            access,
            realm,
        }
    }
}

fn denied(denial: Denied) -> CheckResponse {
    let (http, grpc) = match denial.refusal {
        Refusal::Unauthorized => (StatusCode::Unauthorized, Code::Unauthenticated),
        Refusal::Forbidden => (StatusCode::Forbidden, Code::PermissionDenied),
        Refusal::Unavailable => (StatusCode::ServiceUnavailable, Code::Unavailable),
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc as i32,
            message: denial.message,
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers: vec![header("www-authenticate", denial.challenge)],
            body: String::new(),
        })),
        ..Default::default()
    }
}

fn allow(identity: Vec<(&'static str, String)>) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status::default()),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: identity
                .into_iter()
                .map(|(name, value)| header(name, value))
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A header that replaces any value the client sent. `append: false` as
/// well as the action: Envoy versions before 1.37 ignore `append_action` here.
#[allow(deprecated)]
fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            ..Default::default()
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The `authorization` header among Envoy's (any case of name).
fn authorization(headers: &HashMap<String, String>) -> Option<&str> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.as_str())
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let caller = caller_of(&request)?;
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let empty = HashMap::new();
        let headers = attributes
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .map_or(&empty, |http| &http.headers);
        let presenter = match attributes.source.as_ref().map(|s| s.certificate.as_str()) {
            None | Some("") => None,
            Some(pem) => match from_url_encoded_pem("source.certificate", pem) {
                Ok(thumbprint) => Some(thumbprint),
                Err(e) => return Ok(Response::new(denied(bearer_check::deny(&e, &self.realm)))),
            },
        };
        let context = &attributes.context_extensions;
        let expected = |key: &str| context.get(key).cloned().unwrap_or_default();
        let expected = Expected {
            audience: expected("audience"),
            tenant: expected("tenant"),
        };
        let decision = bearer_check::decide(
            self.validation.as_ref(),
            &self.access,
            &caller,
            "Check",
            authorization(headers),
            presenter.as_deref(),
            &expected,
            &self.realm,
        )
        // A bug, not a verdict on the token.
        .map_err(to_status)?;
        Ok(Response::new(match decision {
            Decision::Allow(identity) => allow(identity),
            Decision::Deny(denial) => denied(denial),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_header_is_found_in_any_case() {
        let h = |k: &str| HashMap::from([(k.to_owned(), "Bearer abc".to_owned())]);
        assert_eq!(authorization(&h("Authorization")), Some("Bearer abc"));
        assert_eq!(authorization(&h("authorization")), Some("Bearer abc"));
        assert_eq!(authorization(&h("x-other")), None);
    }
}
