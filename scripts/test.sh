#!/usr/bin/env bash
# The whole test suite on a fresh machine: tools, formatting, lints (Rust,
# dependencies, protos), then every test, on SQLite and on a throwaway
# PostgreSQL, then a check that the logs of the run hold no token or key.
# `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-tools.sh
export GRPCURL="$PWD/.venv/bin/grpcurl"
export TA_TEST_PYTHON="$PWD/.venv/bin/python"

cargo fmt --all -- --check
# The dependency tree against deny.toml: licences, banned or duplicate
# crates, sources (crates.io only). Not `advisories`: the RustSec database
# is fetched from GitHub, which this machine cannot reach (run
# `cargo deny check advisories` where it can). Drop --hide-inclusion-graph
# to see which of our dependencies pulls a crate in.
.tools/bin/cargo-deny --locked check --hide-inclusion-graph licenses bans sources
# Proto lint (buf.yaml; proto/vendor is excluded).
.tools/buf/node_modules/.bin/buf lint
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo build --locked --workspace --all-targets
# The deploy recipes (deploy/): example config, container image built with
# buildah and run isolated, Kubernetes manifests, systemd unit.
scripts/check-deploy.sh target/debug/token-authority

export TA_TEST_LOG_DIR="$PWD/target/test-logs"
rm -rf "$TA_TEST_LOG_DIR"
scripts/with-postgres.sh cargo test --locked --workspace --all-targets
scripts/check-test-logs.sh "$TA_TEST_LOG_DIR"
