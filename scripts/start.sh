#!/usr/bin/env bash
# Quick start: set up, migrate, load the demo lab, print an admin token and serve on
# http://127.0.0.1:8000 with the embedded PostgreSQL (unless KITTYLAB_DATABASE_URL is set).
# Extra arguments go to `kittylab serve` (for instance --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The slicer is optional for serving: without it only slicing fails.
command -v prusa-slicer >/dev/null 2>&1 || scripts/install-system-deps.sh \
  || echo "warning: PrusaSlicer is missing, slicing will fail (scripts/install-system-deps.sh)" >&2
export KITTYLAB_LOG_JSON=${KITTYLAB_LOG_JSON:-false}
KL=.venv/bin/kittylab

$KL db upgrade
$KL lab apply examples/lab.yaml
token=$($KL users token ada --label quickstart)
# Where the server will listen, for the hint below (the same defaults and flags as serve).
host=${KITTYLAB_HTTP__HOST:-127.0.0.1}
port=${KITTYLAB_HTTP__PORT:-8000}
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --port) port=${args[$((i + 1))]:-$port} ;;
    --port=*) port=${args[$i]#--port=} ;;
    --host) host=${args[$((i + 1))]:-$host} ;;
    --host=*) host=${args[$i]#--host=} ;;
  esac
done
# The web console's first passkey: a one-time enrolment link for ada (issue 17).
invite=$(KITTYLAB_HTTP__PORT=$port $KL users invite ada 2>/dev/null)
cat <<MSG

  KittyLab demo lab is ready.
  Admin token (user 'ada'; shown once, only its hash is stored):

      $token

  Try:  curl -H "Authorization: Bearer $token" http://$host:$port/api/devices

  Web console: open this link in your browser to enrol a passkey as ada and sign in
  (it works once, for ${KITTYLAB_CONSOLE__INVITE_MINUTES:-30} minutes; later: http://localhost:$port/):

      $invite

MSG
exec $KL serve "$@"
