#!/usr/bin/env bash
# Short fuzz run of every cargo-fuzz target (libFuzzer, AddressSanitizer):
#   scripts/fuzz.sh [seconds per target]      (default 60)
# Installs cargo-fuzz into .tools/ if needed. Fails on any crash, panic,
# sanitizer report or input that takes longer than 10 s (a hang), and
# prints the executions per target. Crash inputs land in
# fuzz/artifacts/<target>/; reproduce with
#   PATH=$PWD/.tools/bin:$PATH cargo +nightly fuzz run --fuzz-dir fuzz <target> <file>
# (or, without a nightly, RUSTC_BOOTSTRAP=1 cargo fuzz run ... on the pinned
# stable).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
targets=(refresh_token validate grpc_requests)

if [ ! -x .tools/bin/cargo-fuzz ]; then
  cargo install cargo-fuzz --locked --version 0.13.2 --root .tools
fi
export PATH="$PWD/.tools/bin:$PATH"
# Which toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address,
# -Cpasses=sancov-module ...), so the fuzz build uses the toolchain named
# `nightly` (`cargo +nightly`, overriding the stable pin in
# rust-toolchain.toml) when rustup has one installed. It is not pinned to a
# date: only a toolchain already on the machine can be used, none can be
# downloaded here. A machine without a nightly (a fresh CI runner may lack
# it) falls back to the pinned stable with RUSTC_BOOTSTRAP=1, which unlocks
# the same -Z flags on a stable compiler; the run says which it used.
if rustup toolchain list 2>/dev/null | grep -q '^nightly-'; then
  fuzz_cargo=(cargo +nightly)
  echo "fuzz.sh: fuzzing with the nightly toolchain ($(rustc +nightly --version))"
else
  fuzz_cargo=(cargo)
  export RUSTC_BOOTSTRAP=1
  echo "fuzz.sh: no nightly toolchain installed (rustup toolchain list);" \
    "fuzzing with $(rustc --version) and RUSTC_BOOTSTRAP=1 for cargo-fuzz's -Z flags"
fi

mkdir -p target/fuzz
summary=target/fuzz/summary.txt
: >"$summary"
"${fuzz_cargo[@]}" fuzz build --fuzz-dir fuzz
status=0
for target in "${targets[@]}"; do
  log="target/fuzz/$target.log"
  mkdir -p "fuzz/corpus/$target"
  if "${fuzz_cargo[@]}" fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
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
