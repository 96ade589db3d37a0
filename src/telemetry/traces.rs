//! `tracing` spans become OpenTelemetry spans (tracing-opentelemetry).
//!
//! The subscriber is process-wide but tracer providers belong to each app
//! (each test app exports to its own collector), so the layer's tracer picks
//! the app's tracer per span: the RPC layer puts it into the OTel context
//! it gives the RPC span as parent, and children inherit that context. A
//! span with no app tracer in its context (startup, background jobs) is not
//! exported.
//!
//! While no app exports traces, the layer is off: bridging every RPC span
//! to a tracer that drops it cost ~10% of the cheapest RPC's throughput.
//! Log lines then carry no trace ids (there is no trace to look them up in).
use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::noop::NoopTracer;
use opentelemetry::trace::SpanBuilder;
use opentelemetry::Context;
use opentelemetry_sdk::trace::Tracer;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Apps alive that export traces.
static EXPORTING_APPS: AtomicUsize = AtomicUsize::new(0);

/// Held by an app that exports traces: the layer is on while one lives.
pub struct ExportingTraces(());

impl ExportingTraces {
    pub fn start() -> Self {
        EXPORTING_APPS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for ExportingTraces {
    fn drop(&mut self) {
        EXPORTING_APPS.fetch_sub(1, Ordering::Relaxed);
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
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            EXPORTING_APPS.load(Ordering::Relaxed) > 0
                && meta.target().starts_with("token_authority")
                && *meta.level() <= tracing::Level::INFO
        }))
}
