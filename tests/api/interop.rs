//! Interop with code nobody here wrote: PyJWT verifies our access tokens
//! with the key set from /.well-known/jwks.json, and a grpcio client
//! generated from the Envoy protos (xds-protos) calls Check.
//! `scripts/install-test-tools.sh` installs both into .venv.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn python() -> PathBuf {
    venv_tool("TA_TEST_PYTHON", "python")
}

/// Runs `tests/interop/<script>` with `args`; returns (success, stdout, stderr).
fn run_script(script: &str, args: &[&str]) -> (bool, String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let output = Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .expect("python runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn verify_with_pyjwt(server: &TestServer, token: &str) -> (bool, String, String) {
    let jwks = format!("http://{}/.well-known/jwks.json", server.http_addr);
    run_script("verify_jwt.py", &[&jwks, token, "token-authority", "api"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_tokens_with_the_published_key_set() {
    let server = TestServer::start(Backend::Sqlite).await;
    let eddsa = server.issue("acme", "alice").await;
    server.rotate_key("ES256", Some(Duration::ZERO)).await;
    server.clock.advance(Duration::from_millis(5));
    let es256 = server.issue("acme", "bob").await;

    let (server_ref, tokens) = (&server, [(&eddsa, "alice"), (&es256, "bob")]);
    tokio::task::block_in_place(|| {
        let mut kids = Vec::new();
        for (pair, subject) in tokens {
            let (ok, stdout, stderr) = verify_with_pyjwt(server_ref, &pair.access_token);
            assert!(ok, "PyJWT refused our token: {stderr}");
            let verified: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(verified["claims"]["sub"], subject);
            assert_eq!(verified["claims"]["sid"], pair.session_id);
            kids.push(verified["kid"].as_str().unwrap().to_owned());
        }
        assert_ne!(kids[0], kids[1], "one token per key");

        // And it is really checking: a payload changed after signing fails.
        let mut parts: Vec<String> = es256.access_token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        let (ok, _, stderr) = verify_with_pyjwt(server_ref, &parts.join("."));
        assert!(!ok);
        assert!(
            stderr.contains("InvalidSignatureError") || stderr.contains("DecodeError"),
            "{stderr}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_envoy_client_gets_ok_and_denied() {
    let server = TestServer::start(Backend::Sqlite).await;
    let pair = server.issue("acme", "alice").await;
    let address = server.addr.to_string();
    tokio::task::block_in_place(|| {
        let (ok, stdout, stderr) =
            run_script("ext_authz_check.py", &[&address, &pair.access_token]);
        assert!(ok, "{stderr}");
        let allowed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(allowed["code"], 0, "{allowed}");
        assert_eq!(allowed["headers"]["x-auth-subject"], "alice");
        assert_eq!(allowed["headers"]["x-auth-session-id"], pair.session_id);

        let (ok, stdout, stderr) = run_script("ext_authz_check.py", &[&address, ""]);
        assert!(ok, "{stderr}");
        let denied: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(denied["code"], 16, "{denied}");
        assert_eq!(denied["http_status"], 401);
        assert_eq!(
            denied["headers"]["www-authenticate"],
            "Bearer realm=\"token-authority\""
        );
    });
}
