#!/usr/bin/env bash
# The whole test suite on a fresh machine: tools, formatting, lints, then
# every test, on SQLite and on a throwaway PostgreSQL, then a check that
# the logs of the run hold no token or key. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-tools.sh
export GRPCURL="$PWD/.venv/bin/grpcurl"
export TA_TEST_PYTHON="$PWD/.venv/bin/python"

cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo build --locked --workspace --all-targets

export TA_TEST_LOG_DIR="$PWD/target/test-logs"
rm -rf "$TA_TEST_LOG_DIR"
scripts/with-postgres.sh cargo test --locked --workspace --all-targets
scripts/check-test-logs.sh "$TA_TEST_LOG_DIR"
