//! Wires configuration, storage, the domain, background jobs and the gRPC
//! server together. Used by the CLI and by the integration tests.
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::{self, Authority, Settings};
use crate::jobs;
use crate::jobs::purge::{PurgePolicy, Purger};
use crate::storage::{Store, StoreError};
use crate::telemetry::{Telemetry, TelemetryError};
use crate::transport::{self, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("starting the token authority: {0}")]
    Domain(#[from] domain::Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
}

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
    pub purger: Arc<Purger>,
    telemetry: Telemetry,
    config: Config,
}

impl App {
    /// Connects to the database, migrates it and loads keys and secrets.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Self, AppError> {
        let telemetry = Telemetry::new(&config.telemetry)?;
        let store = Store::connect(&config.database).await?;
        store.migrate().await?;
        let purger = Purger::new(
            store.clone(),
            clock.clone(),
            PurgePolicy::new(&config.purge, config.tokens.access_ttl),
            telemetry.metrics.clone(),
        );
        let authority = Authority::start(store, clock, Settings::from(&config.tokens)).await?;
        Ok(Self {
            authority: Arc::new(authority),
            purger: Arc::new(purger),
            telemetry,
            config,
        })
    }

    /// Flushes telemetry; for commands that build an app without serving.
    pub async fn shutdown(self) {
        self.telemetry.shutdown().await;
    }

    /// Runs the gRPC server and background jobs until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AppError> {
        let (stop_jobs, stopped) = watch::channel(false);
        let sync = tokio::spawn(jobs::state_sync::run(
            self.authority.clone(),
            self.config.state_sync_interval,
            stopped,
        ));
        let purge = self.config.purge.enabled.then(|| {
            let purger = self.purger.clone();
            let every = self.config.purge.interval;
            let stopped = stop_jobs.subscribe();
            tokio::spawn(async move { purger.run(every, stopped).await })
        });
        let served = transport::serve(
            self.authority.clone(),
            &self.telemetry,
            self.config.request_timeout,
            listener,
            shutdown,
        )
        .await;
        let _ = stop_jobs.send(true);
        let _ = sync.await;
        if let Some(purge) = purge {
            let _ = purge.await;
        }
        self.telemetry.shutdown().await;
        served?;
        Ok(())
    }
}
