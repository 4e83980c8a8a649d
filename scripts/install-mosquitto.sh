#!/usr/bin/env bash
# Install the Mosquitto broker and mosquitto_passwd (Debian package "mosquitto") when they
# are missing. The tests start their own broker processes from these binaries; nothing is
# configured or started system-wide here. Idempotent; needs root (or sudo) to install.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if have mosquitto && have mosquitto_passwd; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "mosquitto is missing and apt-get is not available: install Mosquitto 2.x by hand" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "==> installing mosquitto (Debian package)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
have mosquitto && have mosquitto_passwd
