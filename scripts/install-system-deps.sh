#!/usr/bin/env bash
# Install the Debian packages KittyLab drives as external programs. Idempotent: a program
# already on PATH is left alone, so this costs nothing once done.
#   prusa-slicer   the slicer (STL/STEP/3MF -> G-code), run headless through its CLI
#   ssh-keygen     (openssh-client) signs safety approvals: `kittylab approve` with OpenSSH
#                  and FIDO2 keys runs `ssh-keygen -Y sign -n kittylab`
# With --test (scripts/setup.sh --dev, hence scripts/test.sh), also what the tests drive:
#   freecadcmd     (freecad, without its recommends) the second offline CAD provider; the
#                  tests build one prompt of each part family with it
#   prometheus     (with promtool) for the tests of deploy/prometheus: the rules are checked
#                  and a real Prometheus scrapes a live server; KittyLab itself never needs it
# Needs root or password-less sudo, and apt-get (Debian/Ubuntu). Exit 1 when a program is
# missing and cannot be installed.
set -euo pipefail

programs=(prusa-slicer ssh-keygen)
[ "${1:-}" = "--test" ] && programs+=(freecadcmd prometheus promtool)
packages=()
for program in "${programs[@]}"; do
  command -v "$program" >/dev/null 2>&1 && continue
  case "$program" in
    ssh-keygen) packages+=(openssh-client) ;;
    freecadcmd) packages+=(freecad) ;;
    promtool) packages+=(prometheus) ;;
    *) packages+=("$program") ;;
  esac
done
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
for program in "${programs[@]}"; do
  command -v "$program" >/dev/null 2>&1 || { echo "install-system-deps: $program still missing" >&2; exit 1; }
done
