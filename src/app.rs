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
use crate::storage::{Store, StoreError};
use crate::transport::{self, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("starting the token authority: {0}")]
    Domain(#[from] domain::Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
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
    config: Config,
}

impl App {
    /// Connects to the database, migrates it and loads keys and secrets.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Self, AppError> {
        let store = Store::connect(&config.database).await?;
        store.migrate().await?;
        let authority = Authority::start(store, clock, Settings::from(&config.tokens)).await?;
        Ok(Self {
            authority: Arc::new(authority),
            config,
        })
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
        let served = transport::serve(
            self.authority.clone(),
            self.config.request_timeout,
            listener,
            shutdown,
        )
        .await;
        let _ = stop_jobs.send(true);
        let _ = sync.await;
        served?;
        Ok(())
    }
}
