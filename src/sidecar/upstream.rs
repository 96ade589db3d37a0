//! Following the authority: one WatchRevocations stream at a time, applied
//! as it arrives; on any failure, reconnect (with backoff) and resume from
//! the last cursor.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use uuid::Uuid;

use super::Sidecar;
use crate::config::SidecarConfig;
use crate::proto as pb;
use crate::proto::token_authority_client::TokenAuthorityClient;
use crate::transport::{jwk_set_in, millis_of};
use pb::watch_revocations_response::Event;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages are at most ~0.5 MiB (the authority splits snapshots); a wide
/// margin over that, still bounded.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Heartbeats missed before a silent stream is taken for dead.
const MISSED_HEARTBEATS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("sidecar.upstream is not set (or --upstream)")]
    Missing,
    #[error("sidecar upstream: {0}")]
    Config(String),
    #[error(
        "refusing to follow {0} over plain HTTP: the key set and revocations would travel unauthenticated; use https://, a loopback upstream, or --insecure"
    )]
    Plaintext(String),
    #[error("connecting upstream: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("upstream answered: {0}")]
    Status(#[from] tonic::Status),
    #[error("no message from upstream for {0:?}")]
    Silent(Duration),
}

/// Where the authority is and how to prove who we are to it.
#[derive(Clone)]
pub struct Upstream {
    endpoint: Endpoint,
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// Our own heartbeat setting, until the upstream tells its own.
    heartbeat: Duration,
}

impl Upstream {
    /// `insecure` allows a plain-HTTP upstream that is not on loopback.
    pub fn from_config(
        config: &SidecarConfig,
        heartbeat: Duration,
        insecure: bool,
    ) -> Result<Self, UpstreamError> {
        let url = config.upstream.clone().ok_or(UpstreamError::Missing)?;
        let uri: tonic::codegen::http::Uri = url
            .parse()
            .map_err(|e| UpstreamError::Config(format!("{url}: {e}")))?;
        let plain = uri.scheme_str() != Some("https");
        let loopback = match uri.host() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        };
        if plain && !loopback && !insecure {
            return Err(UpstreamError::Plaintext(url));
        }
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| UpstreamError::Config(format!("reading {}: {e}", path.display())))
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| UpstreamError::Config(format!("{url}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(heartbeat)
            .keep_alive_timeout(heartbeat);
        if url.starts_with("https:") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &config.upstream_ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) =
                (&config.upstream_cert_file, &config.upstream_cert_key_file)
            {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            if let Some(domain) = &config.upstream_domain {
                tls = tls.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let bearer = match &config.upstream_key_file {
            Some(path) => {
                let key = String::from_utf8(read(path)?)
                    .map_err(|_| UpstreamError::Config("upstream key file is not text".into()))?;
                let value = format!("Bearer {}", key.trim()).parse().map_err(|_| {
                    UpstreamError::Config("upstream key is not a valid header value".into())
                })?;
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            endpoint,
            bearer,
            heartbeat,
        })
    }
}

/// Follows the upstream until `stop` changes.
pub async fn follow(sidecar: Arc<Sidecar>, upstream: Upstream, mut stop: watch::Receiver<bool>) {
    let mut cursor = String::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let outcome = tokio::select! {
            outcome = follow_once(&sidecar, &upstream, &mut cursor, &mut backoff) => outcome,
            _ = stop.changed() => return,
        };
        sidecar.connected(false);
        match outcome {
            Ok(()) => tracing::info!("upstream closed the revocation stream; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "revocation stream from upstream failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn follow_once(
    sidecar: &Sidecar,
    upstream: &Upstream,
    cursor: &mut String,
    backoff: &mut Duration,
) -> Result<(), UpstreamError> {
    let channel: Channel = upstream.endpoint.connect().await?;
    let mut request = tonic::Request::new(pb::WatchRevocationsRequest {
        cursor: cursor.clone(),
    });
    if let Some(bearer) = &upstream.bearer {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
    }
    let mut stream = TokenAuthorityClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .watch_revocations(request)
        .await?
        .into_inner();
    sidecar.connected(true);
    let mut silence = upstream.heartbeat * MISSED_HEARTBEATS;
    loop {
        let message = tokio::time::timeout(silence, stream.message())
            .await
            .map_err(|_| UpstreamError::Silent(silence))??;
        let Some(message) = message else {
            return Ok(());
        };
        apply(sidecar, message.event);
        let age = message
            .state_age
            .and_then(|age| Duration::try_from(age).ok())
            .unwrap_or_default();
        sidecar.heard_from_upstream(age);
        if let Some(beat) = message
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
        {
            silence = beat * MISSED_HEARTBEATS;
        }
        // Only the last piece of a split snapshot or catch-up has a cursor.
        if !message.cursor.is_empty() {
            *cursor = message.cursor;
        }
        *backoff = FIRST_BACKOFF;
    }
}

fn apply(sidecar: &Sidecar, event: Option<Event>) {
    match event {
        Some(Event::Snapshot(snapshot)) => {
            sidecar.withdraw_keys(&snapshot.withdrawn_key_ids);
            if let Some(keys) = &snapshot.keys {
                sidecar.apply_keys(jwk_set_in(keys));
            }
            sidecar.apply_revocations(&revocations(&snapshot.revoked));
        }
        Some(Event::Revoked(revoked)) => sidecar.apply_revocations(&revocations(&revoked.sessions)),
        Some(Event::Keys(keys)) => sidecar.apply_keys(jwk_set_in(&keys)),
        Some(Event::KeysWithdrawn(withdrawn)) => sidecar.withdraw_keys(&withdrawn.key_ids),
        Some(Event::Heartbeat(_)) | None => {}
    }
}

fn revocations(sessions: &[pb::RevokedSession]) -> Vec<(Uuid, i64)> {
    sessions
        .iter()
        .filter_map(|s| {
            let id = Uuid::try_parse(&s.session_id).ok()?;
            let until = s.relevant_until.as_ref().map(millis_of)?;
            Some((id, until))
        })
        .collect()
}
