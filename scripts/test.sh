#!/usr/bin/env bash
# The whole test suite on a fresh machine: tools, formatting, lints, then
# every test, on SQLite and on a throwaway PostgreSQL. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-tools.sh
export GRPCURL="$PWD/.venv/bin/grpcurl"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo build --locked --workspace --all-targets
scripts/with-postgres.sh cargo test --locked --workspace --all-targets
