#!/usr/bin/env bash
# Installs what scripts/plot-bench.py needs (matplotlib, from PyPI) into the
# repository's .venv, the same one scripts/install-test-tools.sh creates;
# benchmarks only, so the test suite does not pay for it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=("matplotlib==3.11.2")
stamp=.venv/.bench-installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${packages[*]}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${packages[@]}"
  echo "${packages[*]}" >"$stamp"
fi
.venv/bin/python -c 'import matplotlib; print("matplotlib", matplotlib.__version__)'
