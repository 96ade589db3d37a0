//! The load loop: N concurrent workers, each repeating one step until the
//! budget (a duration or a request count) is spent, with latency samples.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    For(Duration),
    Requests(u64),
}

struct Remaining {
    deadline: Option<Instant>,
    requests: Option<AtomicU64>,
}

impl Remaining {
    fn new(budget: Budget) -> Self {
        match budget {
            Budget::For(d) => Self {
                deadline: Some(Instant::now() + d),
                requests: None,
            },
            Budget::Requests(n) => Self {
                deadline: None,
                requests: Some(AtomicU64::new(n)),
            },
        }
    }

    fn take(&self) -> bool {
        if let Some(deadline) = self.deadline {
            return Instant::now() < deadline;
        }
        self.requests.as_ref().is_some_and(|left| {
            left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        })
    }
}

/// One request of a workload. Errors are reported as a short code.
pub trait Step: Send + 'static {
    fn step(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub workload: String,
    pub concurrency: usize,
    pub requests: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
}

/// Runs one worker per step until the budget is spent.
pub async fn run<S: Step>(workload: &str, budget: Budget, steps: Vec<S>) -> Stats {
    let remaining = Arc::new(Remaining::new(budget));
    let concurrency = steps.len();
    let started = Instant::now();
    let workers: Vec<_> = steps
        .into_iter()
        .map(|mut step| {
            let remaining = remaining.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                while remaining.take() {
                    let t = Instant::now();
                    let result = step.step().await;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    if let Err(code) = result {
                        *errors.entry(code).or_default() += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::new();
    for worker in workers {
        let (l, e) = worker.await.expect("worker panicked");
        latencies.extend(l);
        for (code, n) in e {
            *errors.entry(code).or_default() += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
    };
    Stats {
        workload: workload.to_owned(),
        concurrency,
        requests: latencies.len() as u64,
        seconds,
        per_second: latencies.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        errors,
    }
}

pub fn print_table(rows: &[Stats]) {
    println!(
        "| workload | conc. | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in rows {
        let errors = if s.errors.is_empty() {
            "-".to_owned()
        } else {
            s.errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            s.workload,
            s.concurrency,
            s.requests,
            s.per_second,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.max_ms,
            errors
        );
    }
}
