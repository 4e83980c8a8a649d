#!/usr/bin/env bash
# Install the real Moonraker (PyPI `moonraker`, pinned) into its own venv under the cache
# dir, for the Moonraker driver's integration tests. Idempotent: a second run only prints
# the path. Moonraker's dependencies conflict with KittyLab's pins (apprise, …), so it never
# goes into .venv. Prints the path of the `moonraker` executable on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.11.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kittylab"
VENV="$CACHE/moonraker-$VERSION"
STAMP="$VENV/.installed"
PINS="scripts/moonraker/constraints.txt"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Moonraker's authorization component loads libsodium through libnacl (ctypes).
if ! ldconfig -p 2>/dev/null | grep -q 'libsodium\.so'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing libsodium23 (Debian) for Moonraker" >&2
    apt-get install -y -q libsodium23 >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libsodium23 >/dev/null; }
  else
    echo "Moonraker needs libsodium (Debian: libsodium23); install it as root" >&2
    exit 1
  fi
fi

if [ ! -f "$STAMP" ] || [ "$PINS" -nt "$STAMP" ]; then
  echo "==> installing moonraker $VERSION into $VENV" >&2
  mkdir -p "$CACHE"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$PINS" "moonraker==$VERSION" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/moonraker" --help >/dev/null || { echo "moonraker install failed" >&2; exit 1; }
  touch "$STAMP"
fi
echo "$VENV/bin/moonraker"
