//! Micro-benchmarks of the hot paths' building blocks:
//!   cargo bench --bench micro
//! Access-token mint and verify (the crypto floor of Issue/Refresh and of a
//! Validate cache miss), refresh-token parse/derive/digest, and the whole
//! domain Validate with and without the verified-token cache.
// Test and benchmark code: a panic is a failed run, not an outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use token_authority::config::Config;
use token_authority::domain::model::IssueRequest;
use token_authority::domain::refresh_token::RefreshTokenCodec;
use token_authority::domain::Authority;
use token_authority::storage::Store;
use token_authority::verify::access_token::{self, AccessClaims};
use token_authority::verify::caller::Caller;
use token_authority::verify::clock::{Clock, SystemClock};
use token_authority::verify::keys::{ephemeral, KeyAlgorithm};
use token_authority::verify::model::ValidateRequest;

fn claims(now: i64) -> AccessClaims {
    AccessClaims {
        iss: "token-authority".into(),
        sub: "alice".into(),
        aud: "api".into(),
        exp: now / 1000 + 900,
        iat: now / 1000,
        nbf: now / 1000,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        sid: uuid::Uuid::now_v7().to_string(),
        tenant: "acme".into(),
        scope: "read write".into(),
        client_id: "login".into(),
        act: None,
        cnf: None,
        extra: Default::default(),
    }
}

fn access_tokens(c: &mut Criterion) {
    let now = SystemClock.now_millis();
    let claims = claims(now);
    for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
        let (signer, verifying) = ephemeral(algorithm).unwrap();
        let token = access_token::sign(&signer, &claims).unwrap();
        c.bench_function(&format!("access_token/sign/{algorithm}"), |b| {
            b.iter(|| access_token::sign(&signer, black_box(&claims)).unwrap())
        });
        c.bench_function(&format!("access_token/verify/{algorithm}"), |b| {
            b.iter(|| {
                access_token::verify(&verifying, "token-authority", black_box(&token), now, 0)
                    .unwrap()
            })
        });
    }
}

fn refresh_tokens(c: &mut Criterion) {
    let codec = RefreshTokenCodec::new(b"bench secret");
    let token = codec.mint(uuid::Uuid::now_v7()).unwrap();
    let (body, last) = token.as_str().split_at(token.as_str().len() - 1);
    let garbled = format!("{body}{}", if last == "A" { "B" } else { "A" });
    c.bench_function("refresh_token/mint", |b| {
        b.iter(|| codec.mint(black_box(uuid::Uuid::now_v7())).unwrap())
    });
    c.bench_function("refresh_token/parse", |b| {
        b.iter(|| codec.parse(black_box(token.as_str())).unwrap())
    });
    c.bench_function("refresh_token/parse_rejected", |b| {
        b.iter(|| codec.parse(black_box(&garbled)).unwrap_err())
    });
    c.bench_function("refresh_token/successor", |b| {
        b.iter(|| codec.successor(black_box(&token)))
    });
    c.bench_function("refresh_token/digest", |b| {
        b.iter(|| black_box(&token).digest())
    });
}

/// An authority on a temporary SQLite database, and one access token of it.
fn authority(cache: usize) -> (Arc<Authority>, String, tempfile::TempDir) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}/bench.db", dir.path().display());
    config.keys.kek_file = Some(dir.path().join("kek"));
    config.tokens.verified_token_cache = cache;
    let (authority, token) = runtime.block_on(async {
        let store = Store::connect(&token_authority::app::connect_settings(&config.database))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let settings = token_authority::app::domain_settings(&config);
        let authority = Authority::start(Arc::new(store), Arc::new(SystemClock), settings)
            .await
            .unwrap();
        let pair = authority
            .issue(
                &Caller::anonymous(),
                IssueRequest {
                    tenant_id: "acme".into(),
                    subject: "alice".into(),
                    audience: "api".into(),
                    scopes: vec!["read".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        (authority, pair.access_token)
    });
    (Arc::new(authority), token, dir)
}

fn validate(c: &mut Criterion) {
    for (name, cache) in [("validate/cache_hit", 50_000), ("validate/no_cache", 0)] {
        let (authority, token, _dir) = authority(cache);
        let request = ValidateRequest {
            access_token: token,
            expected_audience: "api".into(),
            expected_tenant_id: "acme".into(),
            ..Default::default()
        };
        let caller = Caller::anonymous();
        c.bench_function(name, |b| {
            b.iter(|| authority.validate(&caller, black_box(&request)).unwrap())
        });
    }
}

criterion_group!(benches, access_tokens, refresh_tokens, validate);
criterion_main!(benches);
