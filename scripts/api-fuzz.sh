#!/usr/bin/env bash
# Start `kittylab serve` on a throwaway data dir with the demo lab, then let schemathesis
# exercise every operation in /openapi.json with an admin token. Any 5xx fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
KL=.venv/bin/kittylab
workdir=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mqtt_port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export KITTYLAB_DATA_DIR="$workdir/data" KITTYLAB_LOG_LEVEL=WARNING KITTYLAB_MQTT__EMBEDDED_PORT="$mqtt_port"
unset KITTYLAB_DATABASE_URL

$KL lab apply examples/lab.yaml >/dev/null
admin_token=$($KL users token ada --label schemathesis)
operator_token=$($KL users token olivia --label schemathesis)
$KL serve --port "$port" >"$workdir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$workdir"' EXIT
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$workdir/server.log"; exit 1; }

# CI runs a fixed, reproducible set of cases; SCHEMATHESIS_RANDOM=1 explores new ones.
deterministic="--generation-deterministic"
[ -n "${SCHEMATHESIS_RANDOM:-}" ] && deterministic=""

# As an admin (every write allowed) and as an operator (the 403 paths).
for token in "$admin_token" "$operator_token"; do
  .venv/bin/schemathesis run "http://127.0.0.1:$port/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    $deterministic \
    --workers 1 || { echo "--- server log ---"; tail -50 "$workdir/server.log"; exit 1; }
done
