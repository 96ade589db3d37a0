//! Request decoding end to end: the fuzzer's bytes as the message of a gRPC
//! call, through the server's access layer and real services, against a
//! real (temporary SQLite) database. The first byte picks the method; the
//! second whether to start from a valid template (protobuf merges
//! concatenated messages, so `template ++ fuzz` is the template with the
//! fuzzer's fields laid over it, which reaches deep paths such as a
//! refresh of a genuine token). Every request must be answered with a
//! status, never a panic.
#![no_main]
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use envoy_types::pb::envoy::service::auth::v3 as envoy;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio::runtime::Runtime;
use tonic::service::Routes;
use tower::{Layer, ServiceExt};

use token_authority::app::App;
use token_authority::verify::clock::SystemClock;
use token_authority::config::Config;
use token_authority::verify::caller::Caller;
use token_authority::domain::model::{Device, IssueRequest, TokenPair};
use token_authority::proto as pb;
use token_authority::transport::access_layer::{AccessControl, AccessLayer, AccessService};

const SESSIONS: usize = 8;

struct Fixture {
    runtime: Runtime,
    service: AccessService<Routes>,
    pool: Vec<TokenPair>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.database.url = format!("sqlite://{}/fuzz.db", dir.path().display());
        config.database.sqlite_synchronous = token_authority::config::SqliteSynchronous::Normal;
        config.keys.kek_file = Some(dir.path().join("kek"));
        config.limits.refresh_per_session = None;
        config.limits.caller_rate = None;
        config.log.filter = "off".into();
        let (service, pool) = runtime.block_on(async {
            let app = App::build(config.clone(), Arc::new(SystemClock))
                .await
                .expect("app");
            let mut pool = Vec::new();
            for i in 0..SESSIONS {
                let request = IssueRequest {
                    tenant_id: "acme".into(),
                    subject: format!("user-{i}"),
                    audience: "api".into(),
                    scopes: vec!["read".into()],
                    device: Device::default(),
                    extra_claims: Default::default(),
                    binding: None,
                };
                let pair = app
                    .authority
                    .issue(&Caller::anonymous(), request)
                    .await
                    .expect("issue");
                pool.push(pair);
            }
            let (_, never_stopping) = tokio::sync::watch::channel(false);
            let access = Arc::new(
                AccessControl::new(&config, None, Arc::new(SystemClock)).expect("access"),
            );
            let routes = token_authority::transport::authority_routes(
                app.authority.clone(),
                access.clone(),
                &config,
                never_stopping,
            );
            (AccessLayer(access).layer(routes), pool)
        });
        Fixture {
            runtime,
            service,
            pool,
            _dir: dir,
        }
    })
}

/// The method's path and a valid request for it.
fn template(method: u8, pair: &TokenPair) -> (&'static str, Vec<u8>) {
    let device = Some(pb::Device {
        name: "laptop".into(),
        user_agent: "fuzz".into(),
        ip: "192.0.2.1".into(),
    });
    match method % 9 {
        0 => (
            "/token_authority.v1.TokenAuthority/Issue",
            pb::IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                scopes: vec!["read".into(), "write".into()],
                device,
                extra_claims: Some(prost_types::Struct {
                    fields: [(
                        "roles".to_owned(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue("admin".into())),
                        },
                    )]
                    .into(),
                }),
                binding: None,
            }
            .encode_to_vec(),
        ),
        1 => (
            "/token_authority.v1.TokenAuthority/Refresh",
            pb::RefreshRequest {
                refresh_token: pair.refresh_token.clone(),
                device,
                binding: None,
            }
            .encode_to_vec(),
        ),
        2 => (
            "/token_authority.v1.TokenAuthority/Revoke",
            pb::RevokeRequest {
                tenant_id: "acme".into(),
                target: Some(pb::revoke_request::Target::RefreshToken(
                    pair.refresh_token.clone(),
                )),
                reason: "fuzz".into(),
            }
            .encode_to_vec(),
        ),
        3 => (
            "/token_authority.v1.TokenAuthority/ListSessions",
            pb::ListSessionsRequest {
                tenant_id: "acme".into(),
                subject: "user-1".into(),
                page_size: 2,
                page_token: String::new(),
            }
            .encode_to_vec(),
        ),
        4 => (
            "/token_authority.v1.TokenAuthority/Validate",
            pb::ValidateRequest {
                access_token: pair.access_token.clone(),
                expected_audience: "api".into(),
                expected_tenant_id: "acme".into(),
                presenter_certificate_thumbprint: String::new(),
            }
            .encode_to_vec(),
        ),
        5 => (
            "/token_authority.v1.TokenAuthority/GetJwks",
            pb::GetJwksRequest {}.encode_to_vec(),
        ),
        6 => (
            "/token_authority.v1.TokenAuthority/WatchRevocations",
            pb::WatchRevocationsRequest::default().encode_to_vec(),
        ),
        7 => (
            "/token_authority.v1.Admin/ListSigningKeys",
            pb::ListSigningKeysRequest {}.encode_to_vec(),
        ),
        _ => {
            let mut request = envoy::CheckRequest::default();
            let attributes = request.attributes.get_or_insert_with(Default::default);
            attributes.context_extensions.insert("audience".into(), "api".into());
            let http = attributes
                .request
                .get_or_insert_with(Default::default)
                .http
                .get_or_insert_with(Default::default);
            http.headers.insert(
                "authorization".into(),
                format!("Bearer {}", pair.access_token),
            );
            (
                "/envoy.service.auth.v3.Authorization/Check",
                request.encode_to_vec(),
            )
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let [method, flags, payload @ ..] = data else {
        return;
    };
    let pair = &f.pool[usize::from(flags >> 1) % f.pool.len()];
    let (path, mut message) = template(*method, pair);
    if flags & 1 == 0 {
        message.clear();
    }
    message.extend_from_slice(payload);
    // gRPC framing: uncompressed flag, big-endian length, message.
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://fuzz{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame)))
        .expect("request");
    let response = f
        .runtime
        .block_on(f.service.clone().oneshot(request))
        .expect("the service answers");
    assert_eq!(response.status(), http::StatusCode::OK, "gRPC errors travel as statuses");
});
