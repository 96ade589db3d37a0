//! Interop with a real grpcurl (1.8.6, which speaks reflection v1alpha).
//! `scripts/test.sh` installs it and sets GRPCURL; locally, `.venv/bin/grpcurl`
//! is used if present.
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

fn grpcurl() -> PathBuf {
    if let Some(path) = std::env::var_os("GRPCURL") {
        return PathBuf::from(path);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/grpcurl");
    assert!(
        local.exists(),
        "grpcurl not found: run the tests through scripts/test.sh, or set GRPCURL"
    );
    local
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

crate::on_both_backends!(grpcurl_lists_describes_and_calls,);
