//! Interop with a real grpcurl (1.8.6, which speaks reflection v1alpha).
//! `scripts/test.sh` installs it and sets GRPCURL; locally, `.venv/bin/grpcurl`
//! is used if present.
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

fn grpcurl() -> PathBuf {
    venv_tool("GRPCURL", "grpcurl")
}

/// `grpcurl -plaintext <flags> <address> <command>`.
fn run(server: &TestServer, flags: &[&str], command: &[&str]) -> String {
    let args: Vec<&str> = flags.iter().chain(command).copied().collect();
    let output = Command::new(grpcurl())
        .arg("-plaintext")
        .args(flags)
        .arg(server.addr.to_string())
        .args(command)
        .output()
        .expect("grpcurl runs");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

async fn grpcurl_lists_describes_and_calls(backend: Backend) {
    let server = TestServer::start(backend).await;
    let server = &server;
    tokio::task::block_in_place(|| {
        let services = run(server, &[], &["list"]);
        assert!(
            services.contains("token_authority.v1.TokenAuthority"),
            "{services}"
        );
        assert!(services.contains("grpc.health.v1.Health"), "{services}");

        let described = run(
            server,
            &[],
            &["describe", "token_authority.v1.TokenAuthority"],
        );
        for method in ["Issue", "Refresh", "Revoke", "ListSessions", "Validate"] {
            assert!(described.contains(&format!("rpc {method}")), "{described}");
        }
        let message = run(
            server,
            &[],
            &["describe", "token_authority.v1.IssueRequest"],
        );
        assert!(
            message.contains("Tenant the subject belongs to"),
            "field docs: {message}"
        );

        let issued = run(
            server,
            &[
                "-d",
                r#"{"tenant_id":"acme","subject":"alice","audience":"api","scopes":["read"],"device":{"name":"cli","ip":"127.0.0.1"}}"#,
            ],
            &["token_authority.v1.TokenAuthority/Issue"],
        );
        let issued: serde_json::Value = serde_json::from_str(&issued).unwrap();
        let access_token = issued["tokens"]["accessToken"].as_str().unwrap();
        let request =
            serde_json::json!({ "access_token": access_token, "expected_audience": "api" });
        let validated = run(
            server,
            &["-d", &request.to_string()],
            &["token_authority.v1.TokenAuthority/Validate"],
        );
        let validated: serde_json::Value = serde_json::from_str(&validated).unwrap();
        assert_eq!(validated["valid"], true);
        assert_eq!(validated["claims"]["subject"], "alice");
        assert_eq!(validated["claims"]["tenantId"], "acme");

        let health = run(server, &[], &["grpc.health.v1.Health/Check"]);
        assert!(health.contains("SERVING"), "{health}");
    });
}

/// An error's google.rpc.ErrorInfo, decoded by grpcurl with the
/// google.rpc descriptors that reflection serves.
async fn grpcurl_decodes_error_details(backend: Backend) {
    let server = TestServer::start(backend).await;
    let output = tokio::task::block_in_place(|| {
        Command::new(grpcurl())
            .args(["-plaintext", "-d", r#"{"access_token":"not-a-token"}"#])
            .arg(server.addr.to_string())
            .arg("token_authority.v1.TokenAuthority/Validate")
            .output()
            .expect("grpcurl runs")
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for expected in [
        "Code: Unauthenticated",
        // Without the descriptor, grpcurl could not name the fields.
        r#""@type":"type.googleapis.com/google.rpc.ErrorInfo""#,
        r#""reason":"TOKEN_INVALID""#,
        r#""domain":"token-authority""#,
    ] {
        assert!(stderr.contains(expected), "no {expected} in: {stderr}");
    }
}

/// Envoy's Check, described and called through reflection like any of ours.
async fn grpcurl_calls_envoy_check(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let server = &server;
    tokio::task::block_in_place(|| {
        let described = run(
            server,
            &[],
            &["describe", "envoy.service.auth.v3.Authorization"],
        );
        assert!(described.contains("rpc Check"), "{described}");
        let request = |token: &str| {
            serde_json::json!({
                "attributes": {
                    "request": {"http": {
                        "method": "GET", "path": "/api/things", "host": "example.com",
                        "headers": {"authorization": format!("Bearer {token}")}
                    }},
                    "contextExtensions": {"audience": "api"}
                }
            })
            .to_string()
        };
        let call = |token: &str| -> serde_json::Value {
            let out = run(
                server,
                &["-emit-defaults", "-d", &request(token)],
                &["envoy.service.auth.v3.Authorization/Check"],
            );
            serde_json::from_str(&out).unwrap()
        };
        let allowed = call(&pair.access_token);
        assert_eq!(allowed["status"]["code"], 0, "{allowed}");
        let headers = allowed["okResponse"]["headers"].as_array().unwrap();
        assert!(headers
            .iter()
            .any(|h| h["header"]["key"] == "x-auth-subject" && h["header"]["value"] == "alice"));
        let denied = call("not-a-token");
        assert_eq!(denied["status"]["code"], 16, "{denied}");
        assert_eq!(denied["deniedResponse"]["status"]["code"], "Unauthorized");
    });
}

crate::on_both_backends!(
    grpcurl_lists_describes_and_calls,
    grpcurl_calls_envoy_check,
    grpcurl_decodes_error_details,
);
