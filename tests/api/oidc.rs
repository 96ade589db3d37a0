//! OpenID discovery and JWKS verification by client libraries nobody here
//! wrote: openid-client (discovery, issuer check) and jose (signature,
//! issuer, audience, `typ`, expiry) from npm, in Node.
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::common::*;
use crate::processes::free_port;

async fn verify_with_openid_client(issuer: &str, token: &str) -> (bool, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "openid-client is not installed: run scripts/install-test-tools.sh"
    );
    let output = tokio::process::Command::new("node")
        .arg(dir.join("oidc_verify.mjs"))
        .args([issuer, "api", token])
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), line)
}

async fn openid_client_discovers_and_jose_verifies(backend: Backend) {
    let http_at = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let issuer = format!("http://{http_at}");
    let server = TestServer::start_with_http_at(backend, http_at, |c| {
        c.tokens.issuer = issuer.clone();
        c.http.public_url = Some(issuer.clone());
    })
    .await;
    let pair = server.issue("acme", "alice").await;

    let (ok, verified) = verify_with_openid_client(&issuer, &pair.access_token).await;
    assert!(ok, "{verified}");
    let metadata = &verified["metadata"];
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(
        metadata["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json")
    );
    for required in [
        "authorization_endpoint",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ] {
        assert!(
            metadata.get(required).is_some(),
            "{required} missing: {metadata}"
        );
    }
    assert_eq!(verified["payload"]["sub"], "alice");
    assert_eq!(verified["payload"]["iss"], issuer.as_str());
    assert_eq!(verified["header"]["typ"], "at+jwt");

    // A token whose signature is not the key's fails in jose too.
    let (head, _) = pair.access_token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "A".repeat(86));
    let (ok, refused) = verify_with_openid_client(&issuer, &forged).await;
    assert!(!ok, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("signature"),
        "{refused}"
    );
    println!("openid-client + jose: {verified}\nforged: {refused}");
}

crate::on_both_backends!(openid_client_discovers_and_jose_verifies);
