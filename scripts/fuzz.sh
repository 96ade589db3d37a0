#!/usr/bin/env bash
# Short fuzz run of every cargo-fuzz target (libFuzzer, AddressSanitizer):
#   scripts/fuzz.sh [seconds per target]      (default 60)
# Installs cargo-fuzz into .tools/ if needed. Fails on any crash, panic,
# sanitizer report or input that takes longer than 10 s (a hang), and
# prints the executions per target. Crash inputs land in
# fuzz/artifacts/<target>/; reproduce with
#   RUSTC_BOOTSTRAP=1 .tools/bin/cargo-fuzz run --fuzz-dir fuzz <target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
targets=(refresh_token validate grpc_requests)

if [ ! -x .tools/bin/cargo-fuzz ]; then
  cargo install cargo-fuzz --locked --version 0.13.2 --root .tools
fi
export PATH="$PWD/.tools/bin:$PATH"
# cargo-fuzz passes -Zsanitizer=address; this toolchain is stable.
export RUSTC_BOOTSTRAP=1

mkdir -p target/fuzz
summary=target/fuzz/summary.txt
: >"$summary"
cargo fuzz build --fuzz-dir fuzz
status=0
for target in "${targets[@]}"; do
  log="target/fuzz/$target.log"
  mkdir -p "fuzz/corpus/$target"
  if cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -len_control=0 -max_len=4096 \
      -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
    tail -n 40 "$log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  rate=$(( ${runs:-0} / seconds ))
  printf '%-14s %-6s %12s runs in %ss (%s/s)\n' "$target" "$result" "${runs:-0}" "$seconds" "$rate" | tee -a "$summary"
done
exit "$status"
