//! Micro-benchmarks of the hot paths' building blocks:
//!   cargo bench --bench micro
//! Access-token mint and verify (the crypto floor of Issue/Refresh and of a
//! Validate cache miss), refresh-token parse/derive/digest, and the whole
//! domain Validate with and without the verified-token cache.
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use token_authority::clock::{Clock, SystemClock};
use token_authority::config::{DatabaseConfig, TokenConfig};
use token_authority::domain::access_token::{self, AccessClaims};
use token_authority::domain::model::{IssueRequest, ValidateRequest};
use token_authority::domain::refresh_token::RefreshTokenCodec;
use token_authority::domain::signing_keys::{generate_ed25519, KeyRing};
use token_authority::domain::{Authority, Settings};
use token_authority::storage::Store;

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
        extra: Default::default(),
    }
}

fn access_tokens(c: &mut Criterion) {
    let now = SystemClock.now_millis();
    let ring = KeyRing::from_stored(&[generate_ed25519(now).unwrap()])
        .unwrap()
        .unwrap();
    let claims = claims(now);
    let token = access_token::sign(&ring, &claims).unwrap();
    c.bench_function("access_token/sign", |b| {
        b.iter(|| access_token::sign(&ring, black_box(&claims)).unwrap())
    });
    c.bench_function("access_token/verify", |b| {
        b.iter(|| access_token::verify(&ring, "token-authority", black_box(&token), now).unwrap())
    });
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
    let database = DatabaseConfig {
        url: format!("sqlite://{}/bench.db", dir.path().display()),
        ..Default::default()
    };
    let (authority, token) = runtime.block_on(async {
        let store = Store::connect(&database).await.unwrap();
        store.migrate().await.unwrap();
        let settings = Settings {
            verified_token_cache: cache,
            ..Settings::from(&TokenConfig::default())
        };
        let authority = Authority::start(store, Arc::new(SystemClock), settings)
            .await
            .unwrap();
        let pair = authority
            .issue(IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                scopes: vec!["read".into()],
                ..Default::default()
            })
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
        };
        c.bench_function(name, |b| {
            b.iter(|| authority.validate(black_box(&request)).unwrap())
        });
    }
}

criterion_group!(benches, access_tokens, refresh_tokens, validate);
criterion_main!(benches);
