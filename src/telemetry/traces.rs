//! `tracing` spans become OpenTelemetry spans (tracing-opentelemetry).
//!
//! The subscriber is process-wide but tracer providers belong to each app
//! (each test app exports to its own collector), so the layer's tracer picks
//! the app's tracer per span: the RPC layer puts it into the OTel context
//! it gives the RPC span as parent, and children inherit that context. A
//! span with no app tracer in its context (startup, background jobs) is not
//! exported.
use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::noop::NoopTracer;
use opentelemetry::trace::SpanBuilder;
use opentelemetry::Context;
use opentelemetry_sdk::trace::Tracer;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The app tracer a span's OTel context carries.
#[derive(Clone)]
pub struct AppTracer(pub Tracer);

/// The tracer the process-wide layer builds spans with.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextTracer;

impl opentelemetry::trace::Tracer for ContextTracer {
    type Span = BoxedSpan;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        match parent_cx.get::<AppTracer>() {
            Some(AppTracer(tracer)) => {
                BoxedTracer::new(Box::new(tracer.clone())).build_with_context(builder, parent_cx)
            }
            None => {
                BoxedTracer::new(Box::new(NoopTracer::new())).build_with_context(builder, parent_cx)
            }
        }
    }
}

/// The layer turning our spans into OTel spans, for the global subscriber.
pub fn otel_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(ContextTracer)
        .with_tracked_inactivity(false)
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("token_authority", tracing::Level::INFO),
        )
}
