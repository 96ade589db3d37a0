//! The service's instruments, named in OpenTelemetry style.
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::KeyValue;

use crate::storage::purge::PurgeKind;

pub struct Metrics {
    purge_deleted: Counter<u64>,
    purge_duration: Histogram<f64>,
    purge_backlog: Gauge<u64>,
    sessions_active: Gauge<u64>,
    rpc_duration: Histogram<f64>,
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

    /// `rpc.server.duration` with the RPC semantic-convention attributes.
    pub fn rpc_finished(&self, service: &str, method: &str, grpc_status: i64, millis: f64) {
        self.rpc_duration.record(
            millis,
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service.to_owned()),
                KeyValue::new("rpc.method", method.to_owned()),
                KeyValue::new("rpc.grpc.status_code", grpc_status),
            ],
        );
    }
}

fn purge_attributes(kind: PurgeKind) -> [KeyValue; 2] {
    [
        KeyValue::new("table", kind.table()),
        KeyValue::new("reason", kind.reason()),
    ]
}
