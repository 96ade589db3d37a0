//! tonic answers a request above the decoding limit with OUT_OF_RANGE; gRPC
//! specifies RESOURCE_EXHAUSTED for that, and clients retry-classify on it.
//! This layer rewrites that one status (a trailers-only response) and adds
//! our ErrorInfo reason.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http::{self, HeaderMap};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::status::ERROR_DOMAIN;

#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeAsResourceExhausted;

impl<S> Layer<S> for OversizeAsResourceExhausted {
    type Service = OversizeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OversizeService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct OversizeService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for OversizeService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            rewrite_oversize(response.headers_mut());
            Ok(response)
        })
    }
}

fn rewrite_oversize(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if status.code() != Code::OutOfRange || !status.message().contains("message length too large") {
        return;
    }
    let replacement = Status::with_error_details(
        Code::ResourceExhausted,
        status.message(),
        ErrorDetails::with_error_info("MESSAGE_TOO_LARGE", ERROR_DOMAIN, HashMap::new()),
    );
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if replacement.add_header(headers).is_err() {
        tracing::warn!("could not rewrite an oversize status");
    }
}
