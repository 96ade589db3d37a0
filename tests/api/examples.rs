//! The example clients in `examples/` (Python, Node) run against a real
//! server with authentication: Issue, Validate, Refresh, Revoke, and the
//! ErrorInfo of the revoked session's Refresh. `scripts/install-test-tools.sh`
//! installs their packages (.venv, examples/node/node_modules).
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use token_authority::access::Permission;

const CALLER: &str = "example-client";

fn example(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(relative)
}

/// Runs `program example` against a fresh server; returns its transcript
/// (stdout then stderr) after asserting that it succeeded.
async fn run_example(program: PathBuf, example: PathBuf) -> String {
    let caller = TestCaller::new(CALLER, &[Permission::All], &["*"]);
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.auth.callers = vec![caller.config.clone()];
    })
    .await;
    let output = tokio::task::block_in_place(|| {
        Command::new(&program)
            .arg(&example)
            .args(["--address", &server.addr.to_string()])
            .env("TA_BEARER_KEY", &caller.key)
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()))
    });
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} failed ({}):\n{transcript}",
        example.display(),
        output.status
    );
    transcript
}

fn assert_walkthrough(transcript: &str) {
    for line in [
        "> Issue",
        "> Validate",
        "> Refresh",
        "> Revoke",
        &format!("client_id={CALLER}"),
        "revoked sessions: 1",
        "error: UNAUTHENTICATED",
        "ErrorInfo: reason=SESSION_REVOKED domain=token-authority",
        "ok: Issue, Validate, Refresh, Revoke",
    ] {
        assert!(transcript.contains(line), "no {line:?} in:\n{transcript}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_walks_through_and_reads_the_error() {
    let python = venv_tool("TA_TEST_PYTHON", "python");
    let transcript = run_example(python, example("python/client.py")).await;
    assert_walkthrough(&transcript);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_example_walks_through_and_reads_the_error() {
    let node_modules = example("node/node_modules");
    assert!(
        node_modules.exists(),
        "{} is missing: run scripts/install-test-tools.sh",
        node_modules.display()
    );
    let transcript = run_example("node".into(), example("node/client.mjs")).await;
    assert_walkthrough(&transcript);
}
