#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL 15 server:
#   scripts/with-postgres.sh <command> [args...]
# The server listens on 127.0.0.1 on a free port, lives in a temporary
# directory and is stopped and deleted when the command ends, whatever
# happens. The command sees TA_TEST_POSTGRES_URL (an admin URL; tests create
# one database each), TA_TEST_POSTGRES_BIN and TA_TEST_POSTGRES_PID (the
# postmaster's process id, for the benchmarks' CPU accounting). If
# TA_TEST_POSTGRES_URL is already set, nothing is started: the developer's own
# server is used.
#
# The test suite runs it without durability (fsync=off, …): fast. With
# TA_PG_DURABLE=1 (the benchmarks) it runs with production durability instead
# (fsync=on, synchronous_commit=on, full_page_writes=on) and loads
# pg_stat_statements.
set -euo pipefail

if [ -n "${TA_TEST_POSTGRES_URL:-}" ]; then
  exec "$@"
fi

bin=${TA_TEST_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL 15 server binaries not found in $bin; installing postgresql-15" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  as_pg=(runuser -u postgres --)
fi

dir=$(mktemp -d /tmp/ta-postgres.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
  "${as_pg[@]}" "$bin/pg_ctl" stop -m immediate -D "$dir/data" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${as_pg[@]}" "$bin/initdb" --auth=trust --username=postgres -E UTF8 -D "$dir/data" >/dev/null
options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=400"
if [ "${TA_PG_DURABLE:-0}" = 1 ]; then
  # Benchmarks: a commit waits for the disk, as in production.
  options="$options -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
  options="$options -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=1000"
else
  # Durability is pointless for a throwaway test server; speed is not.
  options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
if ! "${as_pg[@]}" "$bin/pg_ctl" start -w -t 30 -l "$dir/server.log" -D "$dir/data" -o "$options" >/dev/null; then
  cat "$dir/server.log" >&2
  exit 1
fi

export TA_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
export TA_TEST_POSTGRES_BIN="$bin"
TA_TEST_POSTGRES_PID=$(head -n 1 "$dir/data/postmaster.pid")
export TA_TEST_POSTGRES_PID
echo "throwaway PostgreSQL on 127.0.0.1:$port (durable: ${TA_PG_DURABLE:-0})" >&2
status=0
"$@" || status=$?
exit "$status"
