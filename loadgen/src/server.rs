//! The server under load: a running one, or one started in-process.
use std::sync::Arc;

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use crate::steps::{self, Client};
use token_authority::app::App;
use token_authority::config::Config;
use token_authority::domain::Authority;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::storage::Store;
use token_authority::verify::clock::SystemClock;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Target {
    pub channel: Channel,
    /// Set for an in-process server: direct access for database baselines.
    pub authority: Option<Arc<Authority>>,
    pub store: Option<Store>,
    /// The in-process server's database, for the raw baselines.
    pub database_url: Option<String>,
    stop: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    _dir: Option<TempDir>,
}

impl Target {
    pub async fn start(
        address: Option<&str>,
        database_url: Option<&str>,
    ) -> Result<Self, BoxError> {
        Self::start_with(address, database_url, |_| {}).await
    }

    /// Like `start`, with the in-process server's config adjusted by `tweak`.
    pub async fn start_with(
        address: Option<&str>,
        database_url: Option<&str>,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Self, BoxError> {
        if let Some(address) = address {
            let channel = Channel::from_shared(address.to_owned())?.connect().await?;
            return Ok(Self {
                channel,
                authority: None,
                store: None,
                database_url: None,
                stop: None,
                _dir: None,
            });
        }
        let dir = tempfile::tempdir()?;
        let mut config = Config::default();
        config.database.url = match database_url {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}/load.db", dir.path().display()),
        };
        config.purge.enabled = false;
        config.log.filter = "warn".into();
        config.keys.kek_file = Some(dir.path().join("kek"));
        // Throughput, not policy, is measured here.
        config.limits.refresh_per_session = None;
        config.limits.caller_rate = None;
        tweak(&mut config);
        let database_url = config.database.url.clone();
        let app = App::build(config, Arc::new(SystemClock)).await?;
        let authority = app.authority.clone();
        let store = app.store.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = app
                .serve(listener, None, async {
                    let _ = rx.await;
                })
                .await;
        });
        let channel = Channel::from_shared(address)?.connect().await?;
        Ok(Self {
            channel,
            authority: Some(authority),
            store: Some(store),
            database_url: Some(database_url),
            stop: Some((tx, task)),
            _dir: Some(dir),
        })
    }

    pub async fn stop(mut self) {
        if let Some((tx, task)) = self.stop.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
    }

    pub fn client(&self) -> Client {
        TokenAuthorityClient::new(self.channel.clone())
    }

    pub fn health_steps(&self, n: usize) -> Vec<steps::Health> {
        (0..n)
            .map(|_| steps::Health(HealthClient::new(self.channel.clone())))
            .collect()
    }

    /// Each worker validates `distinct` tokens in turn (1: the same token),
    /// starting evenly spread over them: workers never trail each other
    /// closely, so one does not warm the cache for the next.
    pub async fn validate_steps(
        &self,
        n: usize,
        distinct: usize,
    ) -> Result<Vec<steps::Validate>, BoxError> {
        let mut tokens = Vec::with_capacity(distinct);
        for chunk in (0..distinct).collect::<Vec<_>>().chunks(64) {
            let issued = futures::future::join_all(chunk.iter().map(|i| {
                let mut client = self.client();
                async move { steps::issue(&mut client, format!("validate-{i}")).await }
            }))
            .await;
            for pair in issued {
                tokens.push(pair?.access_token);
            }
        }
        Ok((0..n)
            .map(|i| steps::Validate {
                client: self.client(),
                tokens: tokens.clone(),
                next: i * (distinct / n).max(1),
            })
            .collect())
    }

    pub async fn refresh_steps(&self, n: usize) -> Result<Vec<steps::Refresh>, BoxError> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let pair = steps::issue(&mut self.client(), format!("refresh-{i}")).await?;
            out.push(steps::Refresh {
                client: self.client(),
                token: pair.refresh_token,
            });
        }
        Ok(out)
    }

    pub fn issue_steps(&self, n: usize) -> Vec<steps::Issue> {
        (0..n)
            .map(|worker| steps::Issue {
                client: self.client(),
                worker,
                n: 0,
            })
            .collect()
    }

    pub async fn mixed_steps(&self, n: usize) -> Result<Vec<steps::Mixed>, BoxError> {
        let mut out = Vec::with_capacity(n);
        for worker in 0..n {
            let pair = steps::issue(&mut self.client(), format!("mixed-{worker}")).await?;
            out.push(steps::Mixed {
                client: self.client(),
                access: pair.access_token,
                refresh: pair.refresh_token,
                worker,
                n: worker as u64,
            });
        }
        Ok(out)
    }
}
