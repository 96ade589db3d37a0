#!/usr/bin/env bash
# Every benchmark in one command, on SQLite and a throwaway PostgreSQL run
# with production durability (TA_PG_DURABLE=1: fsync, synchronous_commit and
# full_page_writes on, pg_stat_statements loaded):
#   scripts/bench.sh                      (everything)
#   BENCH_PARTS="sweep" scripts/bench.sh  (some parts only)
# Parts: report validate-cache sweep purge micro. SECONDS_PER_PHASE (5) is
# per report phase, SWEEP_SECONDS (3) per sweep point. Writes
# $BENCH_OUT (target/bench): report.json, validate-cache.json, sweep.json and
# the sweep's plots (*.png), next to criterion's output.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_PHASE:-5}
sweep_seconds=${SWEEP_SECONDS:-3}
parts=" ${BENCH_PARTS:-report validate-cache sweep purge micro} "
out=${BENCH_OUT:-target/bench}
release="${CARGO_TARGET_DIR:-target}/release"
has() { [[ "$parts" == *" $1 "* ]]; }
mkdir -p "$out"

if has purge || has micro; then
  cargo build --release --workspace --benches --bins
else
  cargo build --release -p token-authority -p loadgen --bins
fi
export BENCH_RELEASE="$release" BENCH_OUT_DIR="$out" BENCH_SECONDS="$seconds" \
  BENCH_SWEEP_SECONDS="$sweep_seconds" BENCH_PARTS_LIST="$parts"
TA_PG_DURABLE=1 scripts/with-postgres.sh bash -c '
  set -euo pipefail
  has() { [[ "$BENCH_PARTS_LIST" == *" $1 "* ]]; }
  if has report; then
    echo "# Load driver: baselines and targets"
    "$BENCH_RELEASE/loadgen" report --seconds "$BENCH_SECONDS" --json "$BENCH_OUT_DIR/report.json"
    echo
  fi
  if has validate-cache; then
    "$BENCH_RELEASE/loadgen" validate-cache --seconds "$BENCH_SECONDS" --json "$BENCH_OUT_DIR/validate-cache.json"
    echo
  fi
  if has sweep; then
    echo "# Sweep: curves against the server binary, raw limits, CPU, replicas"
    "$BENCH_RELEASE/loadgen" sweep --seconds "$BENCH_SWEEP_SECONDS" \
      --server-bin "$BENCH_RELEASE/token-authority" --json "$BENCH_OUT_DIR/sweep.json"
    echo
  fi
  if has purge; then
    echo "# Purge of a 200k-row backlog under refresh load"
    cargo bench --bench purge_under_load
  fi
'
if has sweep; then
  scripts/install-bench-tools.sh >/dev/null
  .venv/bin/python scripts/plot-bench.py "$out/sweep.json" "$out"
fi
if has micro; then
  echo
  echo '# Micro-benchmarks (criterion)'
  cargo bench --bench micro
fi
