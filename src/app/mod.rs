//! Wires configuration, storage, the domain, background jobs and the
//! servers together. Used by the CLI and by the integration tests.
mod process;
mod settings;

pub use process::{
    bind, build_with_retry, listen_for_shutdown, shutdown_signal, stopped_signal, BindError,
};
pub use settings::{connect_settings, domain_settings, kek_sources};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access::PolicyError;
use crate::config::Config;
use crate::domain::{self, Authority};
use crate::jobs;
use crate::jobs::audit_writer::{AuditQueue, AuditReceiver};
use crate::jobs::purge::{PurgePolicy, Purger};
use crate::storage::{Store, StoreError};
use crate::telemetry::{Telemetry, TelemetryError};
use crate::transport::access_layer::AccessControl;
use crate::transport::{self, GrpcServer, ServeError};
use crate::transport::{health, http};
use crate::verify::clock::SharedClock;

/// How often each replica checks whether a scheduled key rotation is due.
const KEY_ROTATION_CHECK: Duration = Duration::from_secs(60);

/// Each message carries its cause's message, so no cause is linked as
/// `source` as well: `{:#}` would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(StoreError),
    #[error("starting the token authority: {0}")]
    Domain(domain::Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("telemetry: {0}")]
    Telemetry(TelemetryError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("HTTP listener: {0}")]
    Http(std::io::Error),
    #[error("the database is not migrated (pending: {0}): run `token-authority migrate` first")]
    NotMigrated(String),
}

#[derive(Clone, Copy)]
enum Schema {
    Migrate,
    MustBeCurrent,
}

macro_rules! app_error_from {
    ($($variant:ident($cause:ty)),*) => {
        $(impl From<$cause> for AppError {
            fn from(e: $cause) -> Self {
                AppError::$variant(e)
            }
        })*
    };
}
app_error_from!(
    Store(StoreError),
    Domain(domain::Error),
    Telemetry(TelemetryError),
    Http(std::io::Error)
);

impl AppError {
    /// The database could not be reached: worth retrying.
    pub fn is_unavailable(&self) -> bool {
        match self {
            AppError::Store(e) => e.is_unavailable(),
            AppError::Domain(domain::Error::Unavailable(_)) => true,
            _ => false,
        }
    }
}

pub struct App {
    pub authority: Arc<Authority>,
    pub store: Store,
    pub purger: Arc<Purger>,
    pub audit: AuditQueue,
    audit_events: AuditReceiver,
    access: Arc<AccessControl>,
    telemetry: Telemetry,
    config: Config,
}

impl App {
    /// Connects to the database, migrates it, and loads keys and secrets.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Self, AppError> {
        Self::assemble(config, clock, Schema::Migrate).await
    }

    /// Like `build`, for commands that must not change the schema (`keys`,
    /// `purge`, `audit`): fails if the database is not migrated.
    pub async fn open(config: Config, clock: SharedClock) -> Result<Self, AppError> {
        Self::assemble(config, clock, Schema::MustBeCurrent).await
    }

    async fn assemble(
        config: Config,
        clock: SharedClock,
        schema: Schema,
    ) -> Result<Self, AppError> {
        let telemetry = Telemetry::new(&config.telemetry)?;
        // The access policy first: a bad caller list ends the start before
        // anything touches the database.
        let (audit, audit_events) = AuditQueue::new();
        let access = AccessControl::new(&config, Some(audit.clone()), clock.clone())?;
        let store = Store::connect(&connect_settings(&config.database)).await?;
        match schema {
            Schema::Migrate => store.migrate().await?,
            Schema::MustBeCurrent => {
                let pending = store.pending_migrations().await?;
                if !pending.is_empty() {
                    return Err(AppError::NotMigrated(pending.join(", ")));
                }
            }
        }
        let purger = Purger::new(
            store.clone(),
            clock.clone(),
            PurgePolicy::new(
                &config.purge,
                config.tokens.access_ttl,
                config.tokens.clock_leeway,
            ),
            telemetry.metrics.clone(),
        );
        let settings = domain_settings(&config);
        let authority = Authority::start(Arc::new(store.clone()), clock.clone(), settings).await?;
        let authority = Arc::new(authority);
        telemetry.observe(observed(&authority, &store));
        Ok(Self {
            authority,
            store,
            purger: Arc::new(purger),
            audit,
            audit_events,
            access: Arc::new(access),
            telemetry,
            config,
        })
    }

    /// Flushes telemetry; for commands that build an app without serving.
    pub async fn shutdown(self) {
        self.telemetry.shutdown().await;
    }

    /// Runs the gRPC server (and the HTTP listener, if given) and the
    /// background jobs until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        http_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (stop_jobs, stopped) = watch::channel(false);
        let mut jobs = vec![
            tokio::spawn(jobs::state_sync::run(
                self.authority.clone(),
                self.store.clone(),
                self.config.state_sync_interval,
                stopped.clone(),
            )),
            tokio::spawn(jobs::key_rotation::run(
                self.authority.clone(),
                KEY_ROTATION_CHECK,
                stopped.clone(),
            )),
            tokio::spawn(jobs::audit_writer::run(
                Arc::new(self.store.clone()),
                self.audit_events,
                stopped.clone(),
            )),
        ];
        if self.config.purge.enabled {
            let purger = self.purger.clone();
            let every = self.config.purge.interval;
            let stopped = stopped.clone();
            jobs.push(tokio::spawn(
                async move { purger.run(every, stopped).await },
            ));
        }
        let (stop_servers, servers_stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_servers.send(true);
        });
        let health =
            health::authority_probe(self.authority.clone(), self.config.health.max_state_age);
        let http = http_listener
            .map(|listener| {
                http::spawn(
                    http::HttpBackend {
                        validation: self.authority.clone(),
                        authority: Some(self.authority.clone()),
                        access: self.access.clone(),
                        metrics: self.telemetry.metrics.clone(),
                    },
                    &self.config,
                    health.clone(),
                    self.telemetry.prometheus.clone(),
                    listener,
                    stopped_signal(servers_stopped.clone()),
                )
            })
            .transpose()?;
        let server = GrpcServer {
            telemetry: &self.telemetry,
            access: self.access.clone(),
            tls: transport::tls_config(&self.config.tls)?,
            request_timeout: self.config.request_timeout,
            connections: self.config.connections.clone(),
        };
        let served = transport::serve_authority(
            self.authority.clone(),
            &self.config,
            server,
            health,
            listener,
            servers_stopped,
        )
        .await;
        let http_served = http::finished(http).await;
        let _ = stop_jobs.send(true);
        for job in jobs {
            let _ = job.await;
        }
        self.telemetry.shutdown().await;
        served?;
        http_served?;
        Ok(())
    }
}

/// What the telemetry reads from the app at each collection.
fn observed(authority: &Arc<Authority>, store: &Store) -> crate::telemetry::Observed {
    let (cache, sync, pool) = (authority.clone(), authority.clone(), store.clone());
    crate::telemetry::Observed {
        cache: Arc::new(move || {
            let stats = cache.validator().cache_stats();
            (stats.hits, stats.misses)
        }),
        pool: Arc::new(move || pool.pool_connections()),
        state_age_seconds: Arc::new(move || sync.state_age().map(|age| age.as_secs_f64())),
    }
}
