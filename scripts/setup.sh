#!/usr/bin/env bash
# Create .venv and install KittyLab with the pinned versions in constraints.txt.
# Usage: scripts/setup.sh [--dev]     (--dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "KittyLab needs Python 3.11 (found $("$PYTHON" --version))" >&2; exit 2; }

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# llama-cpp-python is an sdist only: build its wheel once into the cache (minutes, the
# first time) and install from there.
scripts/llama-wheel.sh "$PYTHON"
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/kittylab/wheels"
stamp=".venv/.kittylab-installed${extras}"
# Reinstall only when the pins or the project metadata changed since the last install.
if [ ! -f "$stamp" ] || [ constraints.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing kittylab${extras} (pinned by constraints.txt)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip wheel setuptools 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --find-links "$wheels" \
    -c constraints.txt -e ".${extras}" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  .venv/bin/python -c "import kittylab, llama_cpp" || { echo "install failed" >&2; exit 1; }
  touch "$stamp"
fi

# Programs the tests drive as real peers (PrusaSlicer, FreeCAD, Prometheus …): Debian
# packages, each installed only when missing (needs root or password-less sudo; the script
# returns at once when everything is there; see scripts/install-system-deps.sh).
if [ -n "$extras" ]; then
  scripts/install-system-deps.sh --test
fi
