//! Envoy external authorization (`envoy.service.auth.v3.Authorization/Check`):
//! the bearer token of the HTTP request Envoy is deciding on is validated
//! like Validate. Allowed requests go upstream with the token's subject,
//! tenant, scopes and session as headers; denied ones get 401 or 403 with a
//! `WWW-Authenticate` challenge (RFC 6750). Per-route expectations come from
//! Envoy's `context_extensions`: `audience` and `tenant`.
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
use super::status::to_status;
use crate::verify::model::{ValidateRequest, ValidatedToken};
use crate::verify::validation::TokenValidation;
use crate::verify::{Error, ErrorKind};

/// Headers set on allowed requests (any client-sent value is overwritten).
pub const SUBJECT_HEADER: &str = "x-auth-subject";
pub const TENANT_HEADER: &str = "x-auth-tenant";
pub const SCOPES_HEADER: &str = "x-auth-scopes";
pub const SESSION_HEADER: &str = "x-auth-session-id";

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

    /// A request without bearer credentials: a bare challenge, no error
    /// code (RFC 6750 §3.1).
    fn challenge(&self) -> CheckResponse {
        denied(
            StatusCode::Unauthorized,
            Code::Unauthenticated,
            "no bearer token".into(),
            format!("Bearer realm=\"{}\"", self.realm),
        )
    }

    fn deny(&self, error: &Error) -> CheckResponse {
        if error.kind() == ErrorKind::Unavailable {
            // A validator without a usable key set or revocation state
            // denies: left to Envoy's failure_mode_allow, it might allow.
            return denied(
                StatusCode::ServiceUnavailable,
                Code::Unavailable,
                error.to_string(),
                format!("Bearer realm=\"{}\"", self.realm),
            );
        }
        let (http, grpc, oauth) = match error.kind() {
            ErrorKind::PermissionDenied => (
                StatusCode::Forbidden,
                Code::PermissionDenied,
                "insufficient_scope",
            ),
            ErrorKind::InvalidArgument => (
                StatusCode::Unauthorized,
                Code::Unauthenticated,
                "invalid_request",
            ),
            _ => (
                StatusCode::Unauthorized,
                Code::Unauthenticated,
                "invalid_token",
            ),
        };
        let challenge = format!(
            "Bearer realm=\"{}\", error=\"{oauth}\", error_description=\"{}\"",
            self.realm,
            error.reason()
        );
        denied(http, grpc, error.to_string(), challenge)
    }
}

fn denied(http: StatusCode, grpc: Code, message: String, challenge: String) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc as i32,
            message,
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers: vec![header("www-authenticate", challenge)],
            body: String::new(),
        })),
        ..Default::default()
    }
}

fn allow(token: ValidatedToken) -> CheckResponse {
    let c = token.claims;
    CheckResponse {
        status: Some(rpc::Status::default()),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![
                header(SUBJECT_HEADER, c.sub),
                header(TENANT_HEADER, c.tenant),
                header(SCOPES_HEADER, c.scope),
                header(SESSION_HEADER, c.sid),
            ],
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

/// The token of the `authorization: Bearer …` header (any case of name and
/// scheme); `None` without one (no header, or another scheme); a `Bearer`
/// header without a token is INVALID_ARGUMENT naming `authorization`.
fn bearer_token(headers: &HashMap<String, String>) -> Result<Option<String>, Error> {
    let Some(value) = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim())
    else {
        return Ok(None);
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Err(Error::invalid("authorization", "Bearer without a token")),
        token => Ok(Some(token.to_owned())),
    }
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
        let context = &attributes.context_extensions;
        let expected = |key: &str| context.get(key).cloned().unwrap_or_default();
        let access_token = match bearer_token(headers) {
            Ok(Some(token)) => token,
            Ok(None) => return Ok(Response::new(self.challenge())),
            Err(e) => return Ok(Response::new(self.deny(&e))),
        };
        let outcome = self.validation.validate(
            &caller,
            &ValidateRequest {
                access_token,
                expected_audience: expected("audience"),
                expected_tenant_id: expected("tenant"),
            },
        );
        match outcome {
            Ok(token) => Ok(Response::new(allow(token))),
            // A bug, not a verdict on the token.
            Err(e) if e.kind() == ErrorKind::Internal => Err(to_status(e)),
            Err(e) => {
                self.access.refused_by_domain(&caller, "Check", &e);
                Ok(Response::new(self.deny(&e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_found_in_any_case() {
        let h = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        let token = |k: &str, v: &str| bearer_token(&h(k, v)).unwrap();
        assert_eq!(token("authorization", "Bearer abc").as_deref(), Some("abc"));
        assert_eq!(
            token("Authorization", "bearer  abc ").as_deref(),
            Some("abc")
        );
        assert_eq!(token("authorization", "Basic abc"), None);
        assert_eq!(bearer_token(&HashMap::new()).unwrap(), None);
        assert!(bearer_token(&h("authorization", "Bearer ")).is_err());
        assert!(bearer_token(&h("authorization", "Bearer")).is_err());
    }
}
