//! Forward-auth for gateways (NGINX `auth_request`, Traefik `forwardAuth`,
//! Caddy `forward_auth`): `/authz`, any method, body ignored. The same
//! decision as Envoy's Check (`bearer_check`) on the user's
//! `authorization` header: 200 with `X-Auth-Subject`, `X-Auth-Tenant`,
//! `X-Auth-Scopes`, `X-Auth-Session-Id`; 401 or 403 with an RFC 6750
//! challenge. A certificate-bound token needs the client certificate in
//! the header named by `http.client_certificate_header`, set by the
//! gateway; without that setting bound tokens are refused.
//!
//! The route's expectations are query parameters of the gateway's own
//! configuration (`/authz?audience=api&tenant=acme`), never headers:
//! gateways pass the client's headers on to the subrequest (NGINX and
//! Traefik by default), so a client could choose its own expectation
//! wherever the configuration forgot to overwrite one. An unknown or
//! repeated parameter is refused rather than ignored: `audiance=api` must
//! not silently mean "any audience".
//!
//! Trouble that is not a verdict on the user's token is a 5xx, because
//! gateways pass 401 and 403 on to the client (NGINX passes only 2xx, 401
//! and 403; anything else becomes a 500): a refused gateway key or a bad
//! query answers 500 (a configuration error; the user must not be told to
//! log in again), a rate-limited gateway or an unavailable validator 503.
//! None of them ever allows.
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::caller::Presented;
use super::{HttpState, Peer};
use crate::access::Permission;
use crate::transport::access_layer::HttpRefusal;
use crate::transport::bearer_check::{self, Decision, Denied, Expected};
use crate::transport::presenter_certificate;
use crate::verify::Error;

/// The RPC name of refusals in the audit trail and rate limits: the same
/// decision as Envoy's.
const METHOD: &str = "Check";

pub async fn authz(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let backend = &state.backend;
    let caller = match Presented::of_gateway(&headers).admit(
        &backend.access,
        &[Permission::Check],
        METHOD,
        &peer,
    ) {
        Ok(caller) => caller,
        Err(HttpRefusal::Denied(denial)) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the gateway's key is refused: {}", denial.reason()),
            )
        }
        Err(HttpRefusal::RateLimited(after)) => {
            let mut response = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "RATE_LIMITED: too many requests from this gateway".into(),
            );
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            return response;
        }
    };
    let expected = match expected(query.as_deref()) {
        Ok(expected) => expected,
        Err(problem) => {
            tracing::warn!(%problem, "forward-auth request with a bad query: check the gateway's configuration");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, problem);
        }
    };
    let realm = &state.settings.issuer;
    let presenter = presenter_certificate::from_header(
        &headers,
        state.settings.client_certificate_header.as_ref(),
    );
    let decision = match (authorization(&headers), presenter) {
        (Ok(value), Ok(presenter)) => bearer_check::decide(
            backend.validation.as_ref(),
            &backend.access,
            &caller,
            METHOD,
            value,
            presenter.as_deref(),
            &expected,
            realm,
        ),
        (Err(e), _) | (_, Err(e)) => Ok(Decision::Deny(bearer_check::deny(&e, realm))),
    };
    match decision {
        Ok(Decision::Allow(identity)) => allowed(identity),
        Ok(Decision::Deny(denial)) => denied(denial),
        Err(e) => {
            tracing::error!(error = %e, "forward-auth decision failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL".into())
        }
    }
}

/// The expectations in the query: `audience` and `tenant`, each at most once.
fn expected(query: Option<&str>) -> Result<Expected, String> {
    let mut expected = Expected::default();
    let (mut audience, mut tenant) = (false, false);
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let (seen, slot) = match &*name {
            "audience" => (&mut audience, &mut expected.audience),
            "tenant" => (&mut tenant, &mut expected.tenant),
            _ => {
                return Err(format!(
                    "unknown query parameter {name} (known: audience, tenant)"
                ))
            }
        };
        if std::mem::replace(seen, true) {
            return Err(format!("query parameter {name} is sent more than once"));
        }
        *slot = value.into_owned();
    }
    Ok(expected)
}

/// The user's `authorization` header: `None` without one; sent twice or
/// not text, a malformed request.
fn authorization(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::invalid("authorization", "sent more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| Error::invalid("authorization", "not text"))
}

fn allowed(identity: Vec<(&'static str, String)>) -> Response {
    let mut response = no_store(StatusCode::OK, String::new());
    for (name, value) in identity {
        let Ok(value) = HeaderValue::from_str(&value) else {
            tracing::error!(
                header = name,
                "an identity claim cannot be sent as a header"
            );
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL".into());
        };
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
    response
}

fn denied(denial: Denied) -> Response {
    let status = StatusCode::from_u16(denial.refusal.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = no_store(status, String::new());
    if let Ok(challenge) = HeaderValue::from_str(&denial.challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// A text answer for the gateway's operator (gateways do not show it to
/// the client).
fn plain(status: StatusCode, text: String) -> Response {
    let mut response = no_store(status, text);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A decision on one request: gateways that cache answers must not.
fn no_store(status: StatusCode, body: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_come_from_known_parameters_once() {
        let e = expected(Some("audience=api&tenant=ac%20me")).unwrap();
        assert_eq!((e.audience.as_str(), e.tenant.as_str()), ("api", "ac me"));
        let none = expected(None).unwrap();
        assert!(none.audience.is_empty() && none.tenant.is_empty());
        assert!(expected(Some("audiance=api")).is_err());
        assert!(expected(Some("audience=a&audience=b")).is_err());
    }

    #[test]
    fn authorization_sent_twice_is_malformed() {
        let mut h = HeaderMap::new();
        assert_eq!(authorization(&h).unwrap(), None);
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert_eq!(authorization(&h).unwrap(), Some("Bearer a"));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert!(authorization(&h).is_err());
    }
}
