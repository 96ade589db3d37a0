//! Liveness and readiness, the same on gRPC health and on HTTP.
//!
//! - liveness: the process serves (gRPC service `liveness`, `GET /livez`);
//! - readiness: it can serve every RPC it offers, writes included (the
//!   services `readiness`, `""` and `token_authority.v1.TokenAuthority`,
//!   `GET /readyz`, `GET /healthz`);
//! - validate: it can answer Validate and Check, which work from memory, so
//!   this stays SERVING while the database is down (service `validate`,
//!   `GET /readyz/validate`).
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// gRPC health service names, for probes (`grpc_health_probe -service …`,
/// Kubernetes `grpc.service`).
pub const LIVENESS: &str = "liveness";
pub const READINESS: &str = "readiness";
pub const VALIDATE: &str = "validate";
/// Also readiness: what a client asking about the service itself expects.
pub const TOKEN_AUTHORITY: &str = "token_authority.v1.TokenAuthority";

/// How often the gRPC health statuses are brought up to date.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// One look at the server's health.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub ready: bool,
    pub validate: bool,
    /// Why, for `/readyz` and the log: stable field names.
    pub detail: serde_json::Value,
}

/// Asked on every probe and every `REPORT_EVERY`: must be cheap.
pub type HealthProbe = Arc<dyn Fn() -> HealthReport + Send + Sync>;

/// Keeps the gRPC health statuses in step with `probe` until `stopping`
/// turns true, then reports everything but liveness NOT_SERVING (a draining
/// server takes no new work). Logs every change of readiness.
pub async fn report(
    reporter: HealthReporter,
    probe: HealthProbe,
    mut stopping: watch::Receiver<bool>,
) {
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    let mut last: Option<(bool, bool)> = None;
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stopping.borrow() {
            break;
        }
        let health = probe();
        let now = (health.ready, health.validate);
        if last != Some(now) {
            if last.is_some() || !health.ready {
                if health.ready {
                    tracing::info!(detail = %health.detail, "ready");
                } else {
                    tracing::warn!(detail = %health.detail, "not ready");
                }
            }
            set(&reporter, health.ready, health.validate).await;
            last = Some(now);
        }
        tokio::select! {
            _ = every.tick() => {}
            _ = stopping.changed() => {}
        }
    }
    set(&reporter, false, false).await;
}

async fn set(reporter: &HealthReporter, ready: bool, validate: bool) {
    let status = |up: bool| {
        if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    for name in ["", READINESS, TOKEN_AUTHORITY] {
        reporter.set_service_status(name, status(ready)).await;
    }
    reporter
        .set_service_status(VALIDATE, status(validate))
        .await;
}

/// The authority's probe: ready while its state was read from the database
/// within `max_state_age` (the state sync reads it every
/// `state_sync_interval`, so a database that is down, stalled or out of
/// connections makes it age).
pub fn authority_probe(
    authority: Arc<crate::domain::Authority>,
    max_state_age: Duration,
) -> HealthProbe {
    Arc::new(move || {
        let age = authority.state_age();
        let ready = age.is_some_and(|age| age <= max_state_age);
        let status = if ready {
            "serving"
        } else {
            "not serving writes: database unreachable (validating from memory)"
        };
        HealthReport {
            ready,
            validate: true,
            detail: serde_json::json!({
                "status": status,
                "ready": ready,
                "validate": true,
                "state_age_ms": age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                "max_state_age_ms": u64::try_from(max_state_age.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    })
}
