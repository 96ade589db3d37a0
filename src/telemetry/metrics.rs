//! The service's instruments, named in OpenTelemetry style; the Prometheus
//! exporter turns `a.b` into `a_b`, adds the unit (`_seconds`) and `_total`
//! to counters.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::{KeyValue, StringValue};

use crate::storage::purge::PurgeKind;

/// Distinct RPC paths given labels of their own; past this (a client probing
/// made-up methods), they share one, so that series stay bounded.
const MAX_RPC_PATHS: usize = 64;
const OTHER: &str = "other";

pub struct Metrics {
    purge_deleted: Counter<u64>,
    purge_duration: Histogram<f64>,
    purge_backlog: Gauge<u64>,
    sessions_active: Gauge<u64>,
    rpc_duration: Histogram<f64>,
    rpc_requests: Counter<u64>,
    http_duration: Histogram<f64>,
    refresh_outcomes: Counter<u64>,
    validate_outcomes: Counter<u64>,
    reuse_detected: Counter<u64>,
    paths: RwLock<HashMap<String, Rpc>>,
    other: Rpc,
}

/// The labels of one RPC path, built once.
#[derive(Clone)]
pub struct Rpc {
    pub service: StringValue,
    pub method: StringValue,
    /// `service/method`, the span name.
    pub name: StringValue,
}

impl Metrics {
    pub fn new(meter: &Meter) -> Self {
        Self {
            purge_deleted: meter
                .u64_counter("token_authority.purge.deleted")
                .with_description("Rows deleted by the purge task")
                .with_unit("{row}")
                .build(),
            purge_duration: meter
                .f64_histogram("token_authority.purge.duration")
                .with_description("Duration of one purge run")
                .with_unit("s")
                .build(),
            purge_backlog: meter
                .u64_gauge("token_authority.purge.backlog")
                .with_description("Rows purgeable when a purge run starts")
                .with_unit("{row}")
                .build(),
            sessions_active: meter
                .u64_gauge("token_authority.sessions.active")
                .with_description("Sessions neither revoked nor expired")
                .with_unit("{session}")
                .build(),
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_description("Duration of inbound RPCs")
                .with_unit("ms")
                .build(),
            rpc_requests: meter
                .u64_counter("token_authority.rpc.requests")
                .with_description("Inbound RPCs by service, method and gRPC status code")
                .build(),
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_description("Duration of inbound HTTP requests")
                .with_unit("s")
                .build(),
            refresh_outcomes: meter
                .u64_counter("token_authority.refresh.outcomes")
                .with_description("Refreshes (gRPC and the HTTP token endpoint) by outcome: OK or the ErrorInfo reason")
                .build(),
            validate_outcomes: meter
                .u64_counter("token_authority.validate.outcomes")
                .with_description("Validate RPCs by outcome: OK or the ErrorInfo reason")
                .build(),
            reuse_detected: meter
                .u64_counter("token_authority.refresh.reuse_detected")
                .with_description("Refresh tokens presented again after rotation (TOKEN_REUSED)")
                .build(),
            paths: RwLock::new(HashMap::new()),
            other: Rpc::of(OTHER, OTHER),
        }
    }

    pub fn purge_deleted(&self, kind: PurgeKind, rows: u64) {
        self.purge_deleted.add(rows, &purge_attributes(kind));
    }

    pub fn purge_finished(&self, seconds: f64) {
        self.purge_duration.record(seconds, &[]);
    }

    pub fn purge_backlog(&self, kind: PurgeKind, rows: u64) {
        self.purge_backlog.record(rows, &purge_attributes(kind));
    }

    pub fn sessions_active(&self, sessions: u64) {
        self.sessions_active.record(sessions, &[]);
    }

    /// The labels of a request path (`/package.Service/Method`): looked up,
    /// not built, on every call after the first.
    pub fn rpc(&self, path: &str) -> Rpc {
        {
            let paths = self.paths.read().unwrap_or_else(|p| p.into_inner());
            if let Some(rpc) = paths.get(path) {
                return rpc.clone();
            }
            if paths.len() >= MAX_RPC_PATHS {
                return self.other.clone();
            }
        }
        let mut paths = self.paths.write().unwrap_or_else(|p| p.into_inner());
        if paths.len() >= MAX_RPC_PATHS {
            return self.other.clone();
        }
        let trimmed = path.trim_start_matches('/');
        let (service, method) = trimmed.rsplit_once('/').unwrap_or((trimmed, ""));
        let rpc = Rpc::of(service, method);
        paths.insert(path.to_owned(), rpc.clone());
        rpc
    }

    /// `rpc.server.duration` with the RPC semantic-convention attributes,
    /// and the request counter.
    pub fn rpc_finished(&self, rpc: &Rpc, grpc_status: i64, millis: f64) {
        let attributes = [
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", rpc.service.clone()),
            KeyValue::new("rpc.method", rpc.method.clone()),
            KeyValue::new("rpc.grpc.status_code", grpc_status),
        ];
        self.rpc_duration.record(millis, &attributes);
        self.rpc_requests.add(1, &attributes);
    }

    /// `http.server.request.duration` with the HTTP semantic-convention
    /// attributes. `route` is the matched route, not the requested path,
    /// so that series stay bounded.
    pub fn http_finished(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let attributes = [
            KeyValue::new("http.request.method", bounded_method(method)),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        self.http_duration.record(seconds, &attributes);
    }

    /// The outcome of a Refresh: `OK` or the google.rpc.ErrorInfo reason.
    pub fn refresh_outcome(&self, reason: &str) {
        self.refresh_outcomes
            .add(1, &[KeyValue::new("reason", bounded_reason(reason))]);
        if reason == "TOKEN_REUSED" {
            self.reuse_detected.add(1, &[]);
        }
    }

    pub fn validate_outcome(&self, reason: &str) {
        self.validate_outcomes
            .add(1, &[KeyValue::new("reason", bounded_reason(reason))]);
    }
}

impl Rpc {
    fn of(service: &str, method: &str) -> Self {
        Self {
            service: StringValue::from(service.to_owned()),
            method: StringValue::from(method.to_owned()),
            name: StringValue::from(format!("{service}/{method}")),
        }
    }
}

/// The methods of RFC 9110; any other is `_OTHER` (the semantic
/// conventions' bound on client-chosen values).
fn bounded_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

/// Reasons are our own constants (`UPPER_SNAKE`); anything else, which only
/// a proxy in between could have put there, is not a label value.
fn bounded_reason(reason: &str) -> StringValue {
    let ours = reason.len() <= 48
        && reason
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ours {
        StringValue::from(reason.to_owned())
    } else {
        StringValue::from(OTHER)
    }
}

fn purge_attributes(kind: PurgeKind) -> [KeyValue; 2] {
    [
        KeyValue::new("table", kind.table()),
        KeyValue::new("reason", kind.reason()),
    ]
}

/// Observed values the app's parts expose; read at each collection.
pub struct Observed {
    pub cache: Arc<dyn Fn() -> (u64, u64) + Send + Sync>,
    pub pool: Arc<dyn Fn() -> Option<(u32, u32)> + Send + Sync>,
    pub state_age_seconds: Arc<dyn Fn() -> Option<f64> + Send + Sync>,
}

/// Registers the observable instruments: verified-token cache hits and
/// misses, database pool connections, state-sync lag.
pub fn observe(meter: &Meter, observed: Observed) {
    let cache = observed.cache.clone();
    meter
        .u64_observable_counter("token_authority.verified_cache.lookups")
        .with_description("Lookups of the verified-token cache, by result (hit, miss)")
        .with_callback(move |o| {
            let (hits, misses) = cache();
            o.observe(hits, &[KeyValue::new("result", "hit")]);
            o.observe(misses, &[KeyValue::new("result", "miss")]);
        })
        .build();
    let pool = observed.pool.clone();
    meter
        .u64_observable_gauge("token_authority.db.pool.connections")
        .with_description("Database pool connections, by state (in_use, idle)")
        .with_unit("{connection}")
        .with_callback(move |o| {
            if let Some((size, idle)) = pool() {
                let idle = idle.min(size);
                o.observe(u64::from(size - idle), &[KeyValue::new("state", "in_use")]);
                o.observe(u64::from(idle), &[KeyValue::new("state", "idle")]);
            }
        })
        .build();
    let age = observed.state_age_seconds.clone();
    meter
        .f64_observable_gauge("token_authority.state_sync.age")
        .with_description("Time since the last successful state sync from the database")
        .with_unit("s")
        .with_callback(move |o| {
            if let Some(age) = age() {
                o.observe(age, &[]);
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(&SdkMeterProvider::builder().build().meter("test"))
    }

    #[test]
    fn rpc_labels_come_from_the_path_and_stay_bounded() {
        let metrics = metrics();
        let rpc = metrics.rpc("/token_authority.v1.TokenAuthority/Refresh");
        assert_eq!(rpc.service.as_str(), "token_authority.v1.TokenAuthority");
        assert_eq!(rpc.method.as_str(), "Refresh");
        assert_eq!(
            rpc.name.as_str(),
            "token_authority.v1.TokenAuthority/Refresh"
        );
        for i in 0..2 * MAX_RPC_PATHS {
            metrics.rpc(&format!("/made.up/M{i}"));
        }
        assert_eq!(metrics.rpc("/made.up/Another").method.as_str(), OTHER);
        // Paths seen before the limit keep their labels.
        let again = metrics.rpc("/token_authority.v1.TokenAuthority/Refresh");
        assert_eq!(again.method.as_str(), "Refresh");
    }

    #[test]
    fn only_our_reason_constants_become_label_values() {
        assert_eq!(bounded_reason("TOKEN_REUSED").as_str(), "TOKEN_REUSED");
        assert_eq!(bounded_reason("token eyJhbGciOi…").as_str(), OTHER);
        assert_eq!(bounded_reason(&"A".repeat(100)).as_str(), OTHER);
    }
}
