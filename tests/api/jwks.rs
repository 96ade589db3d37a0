//! The key set over gRPC (GetJwks) and HTTP (/.well-known/jwks.json), and
//! the discovery document.
use crate::common::*;
use token_authority::proto as pb;

async fn jwks_over_grpc_and_http_agree_and_verify_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let kid = server.validate(&pair.access_token).await.unwrap().key_id;

    let grpc = server
        .client()
        .get_jwks(pb::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.keys.len(), 1);
    let key = &grpc.keys[0];
    assert_eq!(
        (
            key.kid.as_str(),
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        (kid.as_str(), "OKP", "Ed25519", "EdDSA", "sig")
    );

    let http = http_get(server.http_addr, "/.well-known/jwks.json", &[]).await;
    assert_eq!(http.status, 200);
    assert_eq!(http.header("content-type"), Some("application/json"));
    assert_eq!(
        http.header("cache-control"),
        Some("public, max-age=300, must-revalidate")
    );
    let jwks = http.json();
    assert_eq!(jwks["keys"][0]["kid"], kid);
    assert_eq!(jwks["keys"][0]["x"], key.x);
    assert!(jwks["keys"][0].get("y").is_none(), "no y for OKP keys");

    // Revalidation: the same ETag answers 304 without a body.
    let etag = http.header("etag").expect("etag").to_owned();
    let again = http_get(
        server.http_addr,
        "/.well-known/jwks.json",
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    let discovery = http_get(server.http_addr, "/.well-known/openid-configuration", &[]).await;
    assert_eq!(discovery.status, 200);
    let document = discovery.json();
    assert_eq!(document["issuer"], "token-authority");
    assert_eq!(
        document["jwks_uri"],
        format!("http://{}/.well-known/jwks.json", server.http_addr)
    );

    let health = http_get(server.http_addr, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.header("cache-control"), Some("no-store"));
    assert_eq!(http_get(server.http_addr, "/nope", &[]).await.status, 404);
}

crate::on_both_backends!(jwks_over_grpc_and_http_agree_and_verify_tokens,);
