#!/usr/bin/env bash
# Install the Debian packages KittyLab drives as external programs. Idempotent: a program
# already on PATH is left alone, so this costs nothing once done.
#   prusa-slicer   the slicer (STL/STEP/3MF -> G-code), run headless through its CLI
#   ssh-keygen     (openssh-client) signs safety approvals: `kittylab approve` with OpenSSH
#                  and FIDO2 keys runs `ssh-keygen -Y sign -n kittylab`
#   prometheus     (with promtool) for the tests of deploy/prometheus: the rules are checked
#                  and a real Prometheus scrapes a live server; KittyLab itself never needs it
# Needs root or password-less sudo, and apt-get (Debian/Ubuntu). Exit 1 when a program is
# missing and cannot be installed.
set -euo pipefail

packages=()
command -v prusa-slicer >/dev/null 2>&1 || packages+=(prusa-slicer)
command -v ssh-keygen >/dev/null 2>&1 || packages+=(openssh-client)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
[ ${#packages[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: apt-get not found; install ${packages[*]} with your package manager" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "install-system-deps: need root to install ${packages[*]} (sudo apt-get install ${packages[*]})" >&2
    exit 1
  fi
fi

echo "==> installing ${packages[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
# Try the package lists as they are first; refresh them only when that fails.
if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; then
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
for program in prusa-slicer ssh-keygen prometheus promtool; do
  command -v "$program" >/dev/null 2>&1 || { echo "install-system-deps: $program still missing" >&2; exit 1; }
done
