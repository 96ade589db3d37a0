//! Statuses tonic's codec answers before a request reaches our code, made
//! to follow our error contract (a trailers-only response, rewritten here,
//! with our ErrorInfo reason):
//! - a request above the decoding limit: tonic says OUT_OF_RANGE, gRPC
//!   specifies RESOURCE_EXHAUSTED (`MESSAGE_TOO_LARGE`);
//! - a message that does not decode (bad wire type, truncated, invalid
//!   UTF-8, nested too deep): tonic says INTERNAL, but it is the caller's
//!   fault, and INTERNAL tells clients nothing: INVALID_ARGUMENT
//!   (`MALFORMED_REQUEST`).
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
pub struct CodecStatusLayer;

impl<S> Layer<S> for CodecStatusLayer {
    type Service = CodecStatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CodecStatusService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CodecStatusService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CodecStatusService<S>
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
            rewrite_codec_status(response.headers_mut());
            Ok(response)
        })
    }
}

fn rewrite_codec_status(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let (code, reason) = match status.code() {
        Code::OutOfRange if status.message().contains("message length too large") => {
            (Code::ResourceExhausted, "MESSAGE_TOO_LARGE")
        }
        // prost's DecodeError, and a body that ends inside a message. (A
        // compressed-flag without grpc-encoding stays INTERNAL: the gRPC
        // compression spec requires it.)
        Code::Internal
            if status.message().starts_with("failed to decode")
                || status
                    .message()
                    .starts_with("Unexpected EOF decoding stream") =>
        {
            (Code::InvalidArgument, "MALFORMED_REQUEST")
        }
        _ => return,
    };
    let replacement = Status::with_error_details(
        code,
        status.message(),
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new()),
    );
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if replacement.add_header(headers).is_err() {
        tracing::warn!("could not rewrite a codec status");
    }
}
