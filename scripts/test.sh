#!/usr/bin/env bash
# Set up and run every check: lint, types, the test suite (embedded PostgreSQL, plus the
# server in KITTYLAB_TEST_DATABASE_URL when set) and schemathesis against the live API.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/install-mosquitto.sh   # the MQTT/Bambu tests start their own brokers

echo "==> ruff"
.venv/bin/ruff check src tests deploy
.venv/bin/ruff format --check src tests deploy
echo "==> mypy --strict"
.venv/bin/mypy src deploy/grafana/dashboards.py
echo "==> pytest"
.venv/bin/pytest -q -p no:cacheprovider --durations=25 "$@"
echo "==> schemathesis against a running server"
scripts/api-fuzz.sh
