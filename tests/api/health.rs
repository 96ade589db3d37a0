//! Liveness, readiness and validate readiness, on gRPC health and HTTP:
//! what a load balancer or the kubelet sees while the database is up, down
//! and back.
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::*;
use crate::processes::{free_port, PgServer, Replica};
use token_authority::proto as pb;

const ALL_SERVICES: [&str; 5] = [
    "",
    "liveness",
    "readiness",
    "validate",
    "token_authority.v1.TokenAuthority",
];

async fn grpc_status(channel: &Channel, service: &str) -> ServingStatus {
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("health of {service:?}: {e:?}"))
        .into_inner()
        .status;
    ServingStatus::try_from(status).expect("known status")
}

async fn all_is_well(backend: Backend) {
    let server = TestServer::start(backend).await;
    for path in ["/livez", "/readyz", "/readyz/validate", "/healthz"] {
        let response = http_get(server.http_addr, path, &[]).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
    }
    let ready = http_get(server.http_addr, "/readyz", &[]).await.json();
    assert_eq!(ready["ready"], true, "{ready}");
    assert!(ready["state_age_ms"].as_u64().is_some(), "{ready}");
    for service in ALL_SERVICES {
        assert_eq!(
            grpc_status(&server.channel, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

crate::on_both_backends!(all_is_well);

/// Polls until `check` holds, for at most `within`; returns how long it took.
async fn until(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL stopped: readiness turns NOT_SERVING within the state-age
/// bound while liveness and validate stay SERVING and Validate answers;
/// PostgreSQL started again: ready again by itself, and writes work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_validation_stays_up() {
    let pg = PgServer::start();
    let http_port = free_port().to_string();
    let http_listen = format!("127.0.0.1:{http_port}");
    let issuer = format!("http://{http_listen}");
    let replica = Replica::start(
        &pg.url(),
        &[
            ("TOKEN_AUTHORITY_HTTP__LISTEN", &http_listen),
            ("TOKEN_AUTHORITY_TOKENS__ISSUER", &issuer),
            ("TOKEN_AUTHORITY_HEALTH__MAX_STATE_AGE", "1s"),
            ("TOKEN_AUTHORITY_DATABASE__ACQUIRE_TIMEOUT", "1s"),
            ("TOKEN_AUTHORITY_DATABASE__CONNECT_TIMEOUT", "1s"),
        ],
    )
    .await;
    let http: std::net::SocketAddr = http_listen.parse().unwrap();
    let channel = Channel::from_shared(format!("http://{}", replica.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = replica.client();
    let pair = issue_with(&mut client, "acme", "alice").await;
    assert_eq!(http_get(http, "/readyz", &[]).await.status, 200);

    pg.stop();
    let down_after = until(Duration::from_secs(5), "/readyz says 503", async || {
        http_get(http, "/readyz", &[]).await.status == 503
    })
    .await;
    let body = http_get(http, "/readyz", &[]).await.json();
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(http_get(http, "/livez", &[]).await.status, 200);
    assert_eq!(http_get(http, "/readyz/validate", &[]).await.status, 200);
    // gRPC health is brought up to date every 200 ms.
    for service in ["", "readiness", "token_authority.v1.TokenAuthority"] {
        until(Duration::from_secs(1), service, async || {
            grpc_status(&channel, service).await == ServingStatus::NotServing
        })
        .await;
    }
    for service in ["liveness", "validate"] {
        assert_eq!(
            grpc_status(&channel, service).await,
            ServingStatus::Serving,
            "{service:?} with the database down"
        );
    }
    client
        .validate(pb::ValidateRequest {
            access_token: pair.access_token.clone(),
            ..Default::default()
        })
        .await
        .expect("Validate works from memory");

    pg.start_again();
    let up_after = until(Duration::from_secs(15), "/readyz says 200", async || {
        http_get(http, "/readyz", &[]).await.status == 200
    })
    .await;
    until(Duration::from_secs(1), "gRPC readiness", async || {
        grpc_status(&channel, "").await == ServingStatus::Serving
    })
    .await;
    refresh_with(&mut client, &pair.refresh_token)
        .await
        .expect("a ready replica serves writes");
    let log = replica.log();
    assert!(log.contains("not ready"), "{log}");
    println!(
        "readiness: NOT_SERVING {down_after:?} after PostgreSQL stopped, SERVING {up_after:?} after it started"
    );
}
