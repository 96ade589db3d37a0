//! Metrics and spans reach an OTLP collector started in-process: a tonic
//! server implementing the OTLP metrics and trace services (gRPC), or an
//! axum one taking POST /v1/metrics and /v1/traces (HTTP/protobuf).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::common::*;
use token_authority::storage::purge::PurgeKind;

#[derive(Clone, Default)]
struct Collector {
    metrics: Arc<Mutex<Vec<Metric>>>,
    spans: Arc<Mutex<Vec<Span>>>,
    /// `service.name` of every resource seen.
    services: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.keep_metrics(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.keep_spans(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

fn has_attrs(attributes: &[KeyValue], wanted: &[(&str, &str)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| string_attr(attributes, k).as_deref() == Some(*v))
}

impl Collector {
    fn keep_metrics(&self, request: ExportMetricsServiceRequest) {
        for resource in request.resource_metrics {
            if let Some(r) = &resource.resource {
                self.services
                    .lock()
                    .unwrap()
                    .extend(string_attr(&r.attributes, "service.name"));
            }
            for scope in resource.scope_metrics {
                self.metrics.lock().unwrap().extend(scope.metrics);
            }
        }
    }

    fn keep_spans(&self, request: ExportTraceServiceRequest) {
        for resource in request.resource_spans {
            if let Some(r) = &resource.resource {
                self.services
                    .lock()
                    .unwrap()
                    .extend(string_attr(&r.attributes, "service.name"));
            }
            for scope in resource.scope_spans {
                self.spans.lock().unwrap().extend(scope.spans);
            }
        }
    }

    /// An OTLP/HTTP collector (protobuf bodies); the endpoint is its base URL.
    async fn start_http() -> (Self, String) {
        use axum::body::Bytes;
        use axum::extract::State;
        use prost::Message;
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route(
                "/v1/metrics",
                axum::routing::post(|State(c): State<Collector>, body: Bytes| async move {
                    c.keep_metrics(ExportMetricsServiceRequest::decode(body).unwrap());
                    ExportMetricsServiceResponse::default().encode_to_vec()
                }),
            )
            .route(
                "/v1/traces",
                axum::routing::post(|State(c): State<Collector>, body: Bytes| async move {
                    c.keep_spans(ExportTraceServiceRequest::decode(body).unwrap());
                    ExportTraceServiceResponse::default().encode_to_vec()
                }),
            )
            .with_state(collector.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (collector, endpoint)
    }

    fn services(&self) -> Vec<String> {
        self.services.lock().unwrap().clone()
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until `ready` holds.
    async fn wait_for(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !ready(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not arrive; spans: {:?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start() -> (Self, String) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let serving = collector.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(MetricsServiceServer::new(serving.clone()))
                .add_service(TraceServiceServer::new(serving))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (collector, endpoint)
    }

    /// The latest value of a sum or gauge data point with these attributes.
    fn number(&self, name: &str, attrs: &[(&str, &str)]) -> Option<f64> {
        let metrics = self.metrics.lock().unwrap();
        let points = metrics
            .iter()
            .rev()
            .filter(|m| m.name == name)
            .find_map(|m| {
                let points = match m.data.as_ref()? {
                    metric::Data::Sum(s) => &s.data_points,
                    metric::Data::Gauge(g) => &g.data_points,
                    _ => return None,
                };
                points
                    .iter()
                    .find(|p| has_attrs(&p.attributes, attrs))
                    .cloned()
            })?;
        match points.value? {
            number_data_point::Value::AsInt(i) => Some(i as f64),
            number_data_point::Value::AsDouble(d) => Some(d),
        }
    }

    fn histogram_count(&self, name: &str, attrs: &[(&str, &str)]) -> u64 {
        let metrics = self.metrics.lock().unwrap();
        metrics
            .iter()
            .rev()
            .filter(|m| m.name == name)
            .find_map(|m| match m.data.as_ref()? {
                metric::Data::Histogram(h) => h
                    .data_points
                    .iter()
                    .find(|p| has_attrs(&p.attributes, attrs))
                    .map(|p| p.count),
                _ => None,
            })
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_metrics_and_rpc_spans_reach_the_collector() {
    let (collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.telemetry.otlp_endpoint = Some(endpoint);
        c.telemetry.metrics_interval = Duration::from_millis(200);
        c.purge.enabled = false;
        c.tokens.session_absolute_ttl = Duration::from_secs(3600);
        c.purge.revoked_retention = Duration::from_secs(3600);
    })
    .await;

    // 3 sessions that will expire, 2 that stay live.
    for i in 0..3 {
        server.issue("acme", &format!("old-{i}")).await;
    }
    server.clock.advance(Duration::from_secs(1800));
    for i in 0..2 {
        server.issue("acme", &format!("new-{i}")).await;
    }
    server.clock.advance(Duration::from_secs(1801));
    let report = server.purger.purge_once().await.unwrap();
    assert_eq!(report.deleted(PurgeKind::SessionsExpired), 3);

    // An RPC inside the caller's trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(issue_request("acme", "traced"));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span}-01").parse().unwrap(),
    );
    server.client().issue(request).await.unwrap();

    let expired = [("table", "sessions"), ("reason", "expired")];
    let issue = [("rpc.method", "Issue"), ("rpc.grpc.status_code", "0")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = collector.number("token_authority.purge.deleted", &expired) == Some(3.0)
            && collector.number("token_authority.sessions.active", &[]) == Some(2.0)
            && collector.histogram_count("rpc.server.duration", &issue) >= 1;
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(collector.histogram_count("token_authority.purge.duration", &[]) >= 1);
    // What was waiting when the purge started.
    assert_eq!(
        collector.number("token_authority.purge.backlog", &expired),
        Some(3.0)
    );
    assert!(collector
        .services
        .lock()
        .unwrap()
        .iter()
        .all(|s| s == "token-authority"));

    // Stopping the server flushes the batched spans.
    let mut server = server;
    server.stop().await;
    let spans = collector.spans.lock().unwrap().clone();
    let span = spans
        .iter()
        .find(|s| {
            s.name == "token_authority.v1.TokenAuthority/Issue" && hex(&s.trace_id) == trace_id
        })
        .unwrap_or_else(|| panic!("no Issue span in the caller's trace: {spans:?}"));
    assert_eq!(hex(&span.parent_span_id), parent_span);
    assert!(has_attrs(
        &span.attributes,
        &[("rpc.system", "grpc"), ("rpc.method", "Issue")]
    ));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_carries_metrics_and_an_rpc_trace_with_database_spans() {
    let (collector, endpoint) = Collector::start_http().await;
    let mut server = TestServer::start_with(Backend::Sqlite, |c| {
        c.telemetry.otlp_endpoint = Some(endpoint);
        c.telemetry.otlp_protocol = Some(token_authority::telemetry::OtlpProtocol::HttpProtobuf);
        c.telemetry.metrics_interval = Duration::from_millis(200);
    })
    .await;
    server.issue("acme", "over-http").await;
    let issue = [("rpc.method", "Issue"), ("rpc.grpc.status_code", "0")];
    collector
        .wait_for("rpc.server.duration over OTLP/HTTP", |c| {
            c.histogram_count("rpc.server.duration", &issue) >= 1
        })
        .await;
    server.stop().await;
    let spans = collector.spans();
    let rpc = spans
        .iter()
        .find(|s| s.name == "token_authority.v1.TokenAuthority/Issue")
        .unwrap_or_else(|| panic!("no Issue span: {spans:?}"));
    let db = spans
        .iter()
        .find(|s| s.name == "db.insert_session" && s.trace_id == rpc.trace_id)
        .unwrap_or_else(|| panic!("no database span in the Issue trace: {spans:?}"));
    assert_eq!(db.parent_span_id, rpc.span_id);
}

/// In a real process: the standard OTEL_* variables choose the protocol,
/// the endpoint and `service.name`, and a JSON log line written inside an
/// RPC carries the trace and span ids of the span that process exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_honours_otel_variables_and_logs_carry_trace_ids() {
    let (collector, endpoint) = Collector::start_http().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/authority.db", dir.path().display());
    let mut replica = crate::processes::Replica::start(
        &url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "ta-under-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("TOKEN_AUTHORITY_TELEMETRY__METRICS_INTERVAL", "200ms"),
            ("TOKEN_AUTHORITY_LOG__JSON", "true"),
        ],
    )
    .await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let mut request = tonic::Request::new(issue_request("acme", "logged"));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    replica.client().issue(request).await.unwrap();
    collector
        .wait_for("the Issue span", |c| {
            c.spans().iter().any(|s| {
                s.name == "token_authority.v1.TokenAuthority/Issue" && hex(&s.trace_id) == trace_id
            })
        })
        .await;
    assert!(
        collector.services().iter().any(|s| s == "ta-under-test"),
        "{:?}",
        collector.services()
    );
    assert!(collector.services().iter().all(|s| s == "ta-under-test"));
    let spans = collector.spans();
    let span = spans
        .iter()
        .find(|s| {
            s.name == "token_authority.v1.TokenAuthority/Issue" && hex(&s.trace_id) == trace_id
        })
        .unwrap();
    let span_id = hex(&span.span_id);
    let log = replica.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "rpc" && l["method"] == "Issue")
        .unwrap_or_else(|| panic!("no rpc log line for Issue in:\n{log}"));
    println!("log line: {line}");
    assert_eq!(line["trace_id"], trace_id, "{line}");
    assert_eq!(line["span_id"], span_id.as_str(), "{line}");
    replica.kill9().await;
}
