//! Group commit: concurrent rotations and issues are handed to a few writer
//! tasks, and each writer applies whatever is waiting when it becomes free
//! as one unit (SQLite: one transaction, so one fsync for the batch;
//! PostgreSQL: one statement for the rotations, one transaction for the
//! issues). Nothing waits for a batch to fill: a writer takes what is
//! queued, so a lone request is applied at once and batches grow only while
//! the database is busy with the previous one.
//!
//! Every caller gets its own outcome, and only after its batch committed;
//! each item keeps the compare-and-swap of a single rotation, so batching
//! changes neither the one-successor rule nor reuse detection. A caller
//! that gave up (its deadline passed) before its batch started is left out.
mod issues;
pub(crate) mod postgres;
mod sqlite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use token_authority_domain::ports::{Inserted, SessionCap};
use token_authority_domain::rotation::Rotation;
use token_authority_domain::session::Session;

use super::{Backend, Store, StoreError, StoreResult};

/// Most items one writer applies at once: bounds a batch's statement size
/// and how long its transaction holds locks.
const MAX_BATCH: usize = 64;

/// Requests queued beyond this wait to be queued (the RPC's deadline
/// bounds the wait).
const QUEUE: usize = 4096;

/// The writers' queue; dropping the last handle stops the writers.
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    items: AtomicU64,
    largest: AtomicU64,
}

/// How the writers have batched so far (items per batch = the saving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitStats {
    pub batches: u64,
    pub items: u64,
    pub largest_batch: u64,
}

/// A rotation, owned so that it can wait in the queue.
pub(crate) struct RotateJob {
    pub session_id: String,
    pub tenants: Option<Box<[String]>>,
    pub from_generation: i64,
    pub from_digest: Vec<u8>,
    pub to_digest: Vec<u8>,
    pub now: i64,
    pub idle_expires_at: i64,
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Boxed, and `None` without any, so that queued rotations stay small.
    pub binding: Option<Box<BindingConditions>>,
    pub audit: bool,
    reply: oneshot::Sender<StoreResult<Option<Session>>>,
}

/// The binding conditions of a rotation (see `Rotation::binding_refusal`).
#[derive(Default)]
pub(crate) struct BindingConditions {
    pub presenter: Option<String>,
    pub requested_binding: Option<String>,
    pub binding_required: Vec<String>,
}

impl RotateJob {
    pub fn presenter(&self) -> Option<&str> {
        self.binding.as_ref().and_then(|b| b.presenter.as_deref())
    }

    pub fn requested_binding(&self) -> Option<&str> {
        self.binding
            .as_ref()
            .and_then(|b| b.requested_binding.as_deref())
    }

    pub fn binding_required(&self) -> &[String] {
        self.binding
            .as_ref()
            .map_or(&[], |b| b.binding_required.as_slice())
    }
}

impl RotateJob {
    /// The job for `r`, and where its outcome arrives.
    pub fn new(
        r: &Rotation<'_>,
        audit: bool,
    ) -> (Self, oneshot::Receiver<StoreResult<Option<Session>>>) {
        let (reply, answer) = oneshot::channel();
        let job = RotateJob {
            session_id: r.session_id.to_owned(),
            tenants: r.tenants.map(Box::from),
            from_generation: r.from_generation,
            from_digest: r.from_digest.to_vec(),
            to_digest: r.to_digest.to_vec(),
            now: r.now,
            idle_expires_at: r.idle_expires_at,
            device_name: r.device_name.map(str::to_owned),
            user_agent: r.user_agent.map(str::to_owned),
            ip: r.ip.map(str::to_owned),
            binding: (r.presenter.is_some()
                || r.requested_binding.is_some()
                || !r.binding_required.is_empty())
            .then(|| {
                Box::new(BindingConditions {
                    presenter: r.presenter.map(str::to_owned),
                    requested_binding: r.requested_binding.map(str::to_owned),
                    binding_required: r.binding_required.to_vec(),
                })
            }),
            audit,
            reply,
        };
        (job, answer)
    }

    pub fn rotation(&self) -> Rotation<'_> {
        Rotation {
            session_id: &self.session_id,
            tenants: self.tenants.as_deref(),
            from_generation: self.from_generation,
            from_digest: &self.from_digest,
            to_digest: &self.to_digest,
            now: self.now,
            idle_expires_at: self.idle_expires_at,
            device_name: self.device_name.as_deref(),
            user_agent: self.user_agent.as_deref(),
            ip: self.ip.as_deref(),
            presenter: self.presenter(),
            requested_binding: self.requested_binding(),
            binding_required: self.binding_required(),
        }
    }
}

pub(crate) struct IssueJob {
    pub session: Session,
    pub cap: Option<SessionCap>,
    reply: oneshot::Sender<StoreResult<Inserted>>,
}

enum Job {
    Rotate(RotateJob),
    // A session row is large; boxed so that queued rotations stay small.
    Issue(Box<IssueJob>),
}

impl Job {
    /// The caller stopped waiting (deadline, cancelled RPC).
    fn abandoned(&self) -> bool {
        match self {
            Job::Rotate(j) => j.reply.is_closed(),
            Job::Issue(j) => j.reply.is_closed(),
        }
    }
}

impl GroupCommit {
    /// Starts `writers` writer tasks over `store` (a store without a
    /// group commit of its own, so that writers apply batches directly).
    pub fn start(store: Store, writers: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let counters = Arc::new(Counters::default());
        for _ in 0..writers.max(1) {
            tokio::spawn(write(store.clone(), queue.clone(), counters.clone()));
        }
        Self { jobs, counters }
    }

    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            items: self.counters.items.load(Ordering::Relaxed),
            largest_batch: self.counters.largest.load(Ordering::Relaxed),
        }
    }
}

impl Store {
    /// Applies `r` if [`Rotation::applies_to`] holds, with the `refreshed`
    /// audit event in the same commit when `audit` is set. Returns the
    /// rotated row, or `None` when the session was not in the expected
    /// state (already rotated, revoked, expired or gone); the caller then
    /// reads the row to find out which.
    pub async fn rotate(&self, r: &Rotation<'_>, audit: bool) -> StoreResult<Option<Session>> {
        let (job, answer) = RotateJob::new(r, audit);
        self.submit(Job::Rotate(job), answer).await
    }

    /// Inserts a new session and its `issued` audit event atomically, after
    /// making room under its subject's cap (see `Store::make_room`).
    pub async fn insert_session(
        &self,
        session: &Session,
        cap: Option<SessionCap>,
    ) -> StoreResult<Inserted> {
        let (reply, answer) = oneshot::channel();
        let job = IssueJob {
            session: session.clone(),
            cap,
            reply,
        };
        self.submit(Job::Issue(Box::new(job)), answer).await
    }

    /// How this store's writers have batched so far.
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.group_commit.as_ref().map(|w| w.stats())
    }

    /// Queues `job` for the writers, or, in a store without them (the
    /// writers' own), applies it as a batch of one.
    async fn submit<T>(
        &self,
        job: Job,
        answer: oneshot::Receiver<StoreResult<T>>,
    ) -> StoreResult<T> {
        match &self.group_commit {
            Some(writers) => writers.jobs.send(job).await.map_err(|_| stopped())?,
            None => apply(self, vec![job]).await,
        }
        answer.await.map_err(|_| stopped())?
    }
}

/// The writers are gone (the store is shutting down): unavailable, so the
/// caller retries elsewhere.
fn stopped() -> StoreError {
    sea_orm::sqlx::Error::PoolClosed.into()
}

async fn write(store: Store, queue: Arc<Mutex<mpsc::Receiver<Job>>>, counters: Arc<Counters>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                return;
            }
        }
        let size = jobs.len() as u64;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.items.fetch_add(size, Ordering::Relaxed);
        counters.largest.fetch_max(size, Ordering::Relaxed);
        apply(&store, std::mem::take(&mut jobs)).await;
    }
}

async fn apply(store: &Store, jobs: Vec<Job>) {
    let mut rotations = Vec::new();
    let mut issues = Vec::new();
    for job in jobs.into_iter().filter(|job| !job.abandoned()) {
        match job {
            Job::Rotate(j) => rotations.push(j),
            Job::Issue(j) => issues.push(*j),
        }
    }
    match store.backend() {
        Backend::Sqlite => sqlite::commit(store, rotations, issues).await,
        Backend::Postgres => {
            if !rotations.is_empty() {
                postgres::rotate(store, rotations).await;
            }
            if !issues.is_empty() {
                postgres::issue(store, issues).await;
            }
        }
    }
}

/// Answers each caller with its outcome, or all with the batch's error.
fn answer<J, T>(
    jobs: Vec<J>,
    outcomes: StoreResult<Vec<T>>,
    reply: impl Fn(J) -> oneshot::Sender<StoreResult<T>>,
) {
    match outcomes {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                // The caller may have given up meanwhile; nothing to do then.
                let _ = reply(job).send(Ok(outcome));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = reply(job).send(Err(e.clone()));
            }
        }
    }
}

fn rotate_reply(job: RotateJob) -> oneshot::Sender<StoreResult<Option<Session>>> {
    job.reply
}

fn issue_reply(job: IssueJob) -> oneshot::Sender<StoreResult<Inserted>> {
    job.reply
}
