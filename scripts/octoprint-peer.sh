#!/usr/bin/env bash
# Install the OctoPrint test peer (OctoPrint 1.11.8 with its bundled virtual printer) in a
# venv of its own: it pins old Flask and psutil<7, so it never shares the project's .venv.
# Idempotent: the venv is created once under ${XDG_CACHE_HOME:-$HOME/.cache}/kittylab/ and
# reused; prints the path of the `octoprint` executable on the last line.
# Usage: scripts/octoprint-peer.sh
set -euo pipefail

VERSION=1.11.8
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/kittylab/octoprint-venv"
STAMP="$VENV/.kittylab-octoprint-$VERSION"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 9))' \
  || { echo "OctoPrint $VERSION needs Python >= 3.9 (found $("$PYTHON" --version))" >&2; exit 2; }

if [ ! -f "$STAMP" ]; then
  echo "==> installing OctoPrint $VERSION into $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # pip's notes about index locations configured on this machine but absent are noise.
  { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip wheel 2>&1 \
      && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "octoprint==$VERSION" 2>&1; } \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/octoprint" --version >/dev/null || { echo "OctoPrint install failed" >&2; exit 1; }
  touch "$STAMP"
fi
echo "$VENV/bin/octoprint"
