//! Admission of every request, before its message is decoded: metadata
//! size, authentication (bearer key or client certificate), the RPC's
//! permission, and the caller's rate limit. A refusal is a gRPC status with
//! a reason, and an audit event. An admitted request carries its `Caller`
//! (in the request extensions) to the service, which passes it to the
//! domain for tenant checks.
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http::{self, HeaderMap};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;
use tower::{Layer, Service};

use super::status;
use crate::access::{
    self, AuthenticatedCaller, Denial, Permission, Policy, PolicyError, Required, SanIdentity,
};
use crate::config::Config;
use crate::domain::audit::{AuditEvent, AuditKind};
use crate::domain::rate_limit::KeyedLimiter;
use crate::jobs::audit_writer::AuditQueue;
use crate::verify::binding::thumbprint_of_der;
use crate::verify::caller::Caller;
use crate::verify::clock::SharedClock;
use crate::verify::Error;

/// Longest `authorization` value accepted (a bearer key is 47 bytes).
const MAX_AUTHORIZATION: usize = 1024;

/// A method name as audited: the path is the client's, so it is bounded.
const MAX_AUDITED_METHOD: usize = 64;

/// Whose allowance a request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RateKey {
    Caller(Arc<str>),
    /// Unauthenticated: the peer's address.
    Peer(Option<IpAddr>),
}

pub struct AccessControl {
    policy: Policy,
    /// Per caller name (or per peer IP when unauthenticated).
    default_rate: Option<KeyedLimiter<RateKey>>,
    /// Callers with a rate of their own.
    own_rates: HashMap<Arc<str>, KeyedLimiter<()>>,
    max_metadata_bytes: usize,
    audit: Option<AuditQueue>,
    clock: SharedClock,
    /// Who every request is without authentication (made once: admission
    /// is on every request's path).
    anonymous: Caller,
}

impl AccessControl {
    pub fn new(
        config: &Config,
        audit: Option<AuditQueue>,
        clock: SharedClock,
    ) -> Result<Self, PolicyError> {
        let policy = Policy::new(&config.auth)?;
        let own_rates = config
            .auth
            .callers
            .iter()
            .filter_map(|c| {
                let rate = c.rate?;
                Some((
                    Arc::from(c.name.as_str()),
                    KeyedLimiter::new(rate.into(), clock.clone()),
                ))
            })
            .collect();
        Ok(Self {
            policy,
            default_rate: config
                .limits
                .caller_rate
                .map(|rate| KeyedLimiter::new(rate.into(), clock.clone())),
            own_rates,
            max_metadata_bytes: config.limits.max_metadata_bytes,
            audit,
            clock,
            anonymous: Caller::anonymous(),
        })
    }

    /// Drops rate-limit state of callers idle long enough to be back to a
    /// full allowance (bounds memory under many distinct peers).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.default_rate {
            limiter.forget_idle();
        }
        self.own_rates.values().for_each(KeyedLimiter::forget_idle);
    }

    fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let path = request.uri().path();
        let required = Required::for_path(path);
        let metadata_bytes: usize = path.len()
            + request
                .headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum::<usize>();
        if metadata_bytes > self.max_metadata_bytes {
            return Err(status::invalid_metadata(
                "metadata",
                format!(
                    "request metadata must be at most {} bytes",
                    self.max_metadata_bytes
                ),
            ));
        }
        if required == Required::Open {
            return Ok(());
        }
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip());
        let caller = if self.policy.is_enabled() {
            match self.authenticate(request) {
                Ok(caller) => caller,
                Err(denial) => {
                    // Unauthenticated requests share their peer's allowance,
                    // so that a flood of them is cut short before auditing.
                    self.check_rate(None, peer)?;
                    let method = method_of(request.uri().path());
                    self.refuse(denial, &method, None, peer);
                    return Err(status::denied(denial, &method));
                }
            }
        } else {
            None
        };
        // Refused calls count against the caller's rate too, so that they
        // cannot flood the audit trail.
        self.check_rate(caller.as_deref(), peer)?;
        if let (Some(caller), Required::Permission(permission)) = (&caller, required) {
            if !caller.may(permission) {
                let denial = Denial::PermissionNotGranted;
                let method = method_of(request.uri().path());
                self.refuse(denial, &method, Some(&caller.caller), peer);
                return Err(status::denied(denial, &method));
            }
        }
        let caller = caller
            .map_or_else(|| self.anonymous.clone(), |c| c.caller.clone())
            .with_certificate(client_certificate_thumbprint(request));
        request.extensions_mut().insert(caller);
        Ok(())
    }

    fn authenticate<B>(
        &self,
        request: &http::Request<B>,
    ) -> Result<Option<Arc<AuthenticatedCaller>>, Denial> {
        let bearer = bearer_key(request.headers())?;
        let identities = if self.policy.uses_certificates() {
            client_certificate_identities(request)
        } else {
            Vec::new()
        };
        self.policy.authenticate(bearer, &identities).map(Some)
    }

    fn check_rate(
        &self,
        caller: Option<&AuthenticatedCaller>,
        peer: Option<IpAddr>,
    ) -> Result<(), Status> {
        self.spend(caller, peer)
            .map_err(status::caller_rate_limited)
    }

    /// Spends one request of the caller's allowance (the peer's when
    /// unauthenticated); when it is used up, how long until the next one.
    fn spend(
        &self,
        caller: Option<&AuthenticatedCaller>,
        peer: Option<IpAddr>,
    ) -> Result<(), Duration> {
        match caller {
            Some(c) => match self.own_rates.get(&c.caller.name) {
                Some(limiter) => limiter.check(&()),
                None => self
                    .default_rate
                    .as_ref()
                    .map_or(Ok(()), |l| l.check(&RateKey::Caller(c.caller.name.clone()))),
            },
            None => self
                .default_rate
                .as_ref()
                .map_or(Ok(()), |l| l.check(&RateKey::Peer(peer))),
        }
    }

    /// Admission of an HTTP request (`/oauth2/*`, `/authz`): the same
    /// callers, rates and refusal audit as gRPC, for credentials the HTTP
    /// endpoint found, and a permission of `any_of`.
    pub fn admit_http(
        &self,
        credentials: HttpCredentials<'_>,
        any_of: &[Permission],
        method: &str,
        peer: Option<IpAddr>,
    ) -> Result<Caller, HttpRefusal> {
        if !self.policy.is_enabled() {
            self.spend(None, peer).map_err(HttpRefusal::RateLimited)?;
            return Ok(self.anonymous.clone());
        }
        let authenticated = self
            .policy
            .authenticate(credentials.key, credentials.identities)
            .and_then(|caller| match credentials.client_id {
                Some(id) if id != &*caller.caller.name => Err(Denial::CredentialsInvalid),
                _ => Ok(caller),
            });
        let caller = match authenticated {
            Ok(caller) => caller,
            Err(denial) => {
                self.spend(None, peer).map_err(HttpRefusal::RateLimited)?;
                self.refuse(denial, method, None, peer);
                return Err(HttpRefusal::Denied(denial));
            }
        };
        self.spend(Some(&caller), peer)
            .map_err(HttpRefusal::RateLimited)?;
        if !any_of.iter().any(|&p| caller.may(p)) {
            let denial = Denial::PermissionNotGranted;
            self.refuse(denial, method, Some(&caller.caller), peer);
            return Err(HttpRefusal::Denied(denial));
        }
        Ok(caller.caller.clone())
    }

    fn refuse(&self, denial: Denial, method: &str, caller: Option<&Caller>, peer: Option<IpAddr>) {
        let who = caller.map_or("unauthenticated", |c| &*c.name);
        let peer = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        self.audit_refusal(who, method, denial.reason(), Some(&peer));
    }

    /// Audits a refusal the domain made after admission: a caller acting on
    /// a tenant outside its own, or a token exchange the policy does not
    /// allow. Other errors are not refusals.
    pub fn refused_by_domain(&self, caller: &Caller, method: &str, error: &Error) {
        if matches!(
            error,
            Error::TenantNotPermitted | Error::ExchangeNotPermitted(_)
        ) {
            self.audit_refusal(&caller.name, method, error.reason(), None);
        }
    }

    fn audit_refusal(&self, who: &str, method: &str, reason: &str, peer: Option<&str>) {
        tracing::warn!(target: "token_authority::audit", caller = %who, %method, %reason, peer, "request refused");
        let context = peer.map(|p| format!(" from {p}")).unwrap_or_default();
        if let Some(audit) = &self.audit {
            audit.record(AuditEvent {
                at: self.clock.now_millis(),
                kind: AuditKind::AccessDenied,
                tenant_id: String::new(),
                subject: who.to_owned(),
                session_id: None,
                detail: Some(format!("{method}: {reason}{context}")),
            });
        }
    }
}

/// The method of a path, as audited (the path is the client's: bounded).
fn method_of(path: &str) -> String {
    path.rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(MAX_AUDITED_METHOD)
        .collect()
}

/// The key of an `authorization: Bearer <key>` header, if there is one.
fn bearer_key(headers: &HeaderMap) -> Result<Option<&str>, Denial> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    if value.len() > MAX_AUTHORIZATION {
        return Err(Denial::CredentialsInvalid);
    }
    let value = value.to_str().map_err(|_| Denial::CredentialsInvalid)?;
    let (scheme, key) = value.split_once(' ').ok_or(Denial::CredentialsInvalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") || key.trim().is_empty() {
        return Err(Denial::CredentialsInvalid);
    }
    Ok(Some(key.trim()))
}

fn client_certificate_identities<B>(request: &http::Request<B>) -> Vec<SanIdentity> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|chain| chain.first().map(|leaf| access::identities(leaf.as_ref())))
        .unwrap_or_default()
}

/// The x5t#S256 thumbprint of the connection's verified client
/// certificate, if it presented one (what bound refresh tokens need).
fn client_certificate_thumbprint<B>(request: &http::Request<B>) -> Option<Arc<str>> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|chain| chain.first().map(|leaf| thumbprint_of_der(leaf.as_ref())))
        .map(Arc::from)
}

/// What an HTTP endpoint found to authenticate its caller with.
#[derive(Debug, Default, Clone, Copy)]
pub struct HttpCredentials<'a> {
    /// A bearer key: from `authorization: Bearer`, a client secret, or the
    /// gateway's own header.
    pub key: Option<&'a str>,
    /// The OAuth client id sent with a client secret: it must name the
    /// key's caller.
    pub client_id: Option<&'a str>,
    /// The SANs of the client certificate (HTTP over TLS); a key, if
    /// present, decides, as over gRPC.
    pub identities: &'a [SanIdentity],
}

/// Why an HTTP request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRefusal {
    Denied(Denial),
    /// The caller's allowance is spent: retry after this long.
    RateLimited(Duration),
}

#[derive(Clone)]
pub struct AccessLayer(pub Arc<AccessControl>);

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            control: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    control: Arc<AccessControl>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AccessService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        match self.control.admit(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

/// The caller the access layer admitted. Missing only if the layer was
/// not installed: fail closed.
pub fn caller_of<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("request was not admitted by the access layer"))
}
