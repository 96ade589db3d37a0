#!/usr/bin/env bash
# Every benchmark in one command, on SQLite and a throwaway PostgreSQL:
#   scripts/bench.sh            (SECONDS=5 per load phase by default)
# Writes target/bench/report.json (load driver) next to criterion's output.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_PHASE:-5}
mkdir -p target/bench

cargo build --release --workspace --benches --bins
scripts/with-postgres.sh bash -c "
  set -euo pipefail
  echo '# Load driver: baselines and targets'
  target/release/loadgen report --seconds $seconds --json target/bench/report.json
  echo
  target/release/loadgen validate-cache --seconds $seconds --json target/bench/validate-cache.json
  echo
  echo '# Purge of a 200k-row backlog under refresh load'
  cargo bench --bench purge_under_load
"
echo
echo '# Micro-benchmarks (criterion)'
cargo bench --bench micro
