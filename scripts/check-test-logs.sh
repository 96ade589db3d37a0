#!/usr/bin/env bash
# Proves that the logs of a test run hold no token, key or secret:
#   scripts/check-test-logs.sh <log dir>
# scripts/test.sh runs the suite with TA_TEST_LOG_DIR set: every in-process
# server and every child process logs there, our own code at trace level.
set -euo pipefail
dir=${1:?usage: check-test-logs.sh <log dir>}

mapfile -t files < <(find "$dir" -type f -name '*.log' 2>/dev/null)
if [ ${#files[@]} -eq 0 ]; then
  echo "check-test-logs: no logs in $dir" >&2
  exit 1
fi

# The logs are real: a full run logs these, so an empty or truncated capture
# cannot pass for a clean one.
for expected in "request refused" "signing key added" "key-encryption key loaded" "refresh token reuse detected"; do
  if ! grep -qF "$expected" "${files[@]}"; then
    echo "check-test-logs: no \"$expected\" in the captured logs: capture is broken" >&2
    exit 1
  fi
done

status=0
check() {
  local what=$1 pattern=$2
  local hits
  hits=$(grep -EnH -- "$pattern" "${files[@]}" | head -n 5 || true)
  if [ -n "$hits" ]; then
    echo "check-test-logs: $what in the logs:" >&2
    # Show where, not what: cut the line before printing it.
    cut -c1-160 <<<"$hits" >&2
    status=1
  fi
}
check "a refresh token" 'rt1_[A-Za-z0-9_-]{20,}'
check "an access token (JWT)" 'eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}'
check "a bearer key" 'tak_[A-Za-z0-9_-]{20,}'
check "a bearer credential" '[Bb]earer [A-Za-z0-9._~+/-]{16,}'
check "a PEM private key" 'PRIVATE KEY'
check "the test key-encryption key" 'dGVzdC1vbmx5LWtlay0'

lines=$(cat "${files[@]}" | wc -l)
if [ "$status" = 0 ]; then
  echo "check-test-logs: ${#files[@]} log files, $lines lines: no token, key or secret"
fi
exit "$status"
