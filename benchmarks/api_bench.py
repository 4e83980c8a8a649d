"""Foundation benchmarks: API list latency, telemetry ingest throughput and the cost of
authentication, measured in-process against a real (embedded) PostgreSQL.

Run:  .venv/bin/python benchmarks/api_bench.py [--rounds N]
Writes benchmarks/results/api_bench.json and prints a summary. Numbers depend on the
machine; compare runs on the same one.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from common import demo_lab, percentiles
from fastapi.testclient import TestClient

from kittylab.api.app import create_app
from kittylab.people import identity

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "api_bench.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with demo_lab() as c:
        with c.database.unit_of_work() as s:
            token = identity.issue_token(s, identity.find_user_by_username(s, "ada")).token
        results = _run(TestClient(create_app(c)), token, args.rounds)
    results["machine"] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _run(client: TestClient, token: str, rounds: int) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(20):  # warm pools and caches
        client.get("/api/devices", headers=headers)

    def timed(call: object) -> list[float]:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            response = call()  # type: ignore[operator]
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status_code < 300, response.text
        return samples

    devices = timed(lambda: client.get("/api/devices?limit=50", headers=headers))
    health = timed(lambda: client.get("/healthz"))
    device_id = client.get("/api/devices?name=farm-climate", headers=headers).json()["items"][0][
        "id"
    ]
    batch = {
        "events": [
            {"deviceId": device_id, "topic": "climate", "payload": {"t": 21.5 + i / 100, "rh": 40}}
            for i in range(100)
        ]
    }
    ingest = timed(lambda: client.post("/api/telemetry", json=batch, headers=headers))
    ingest_seconds = sum(ingest) / 1000
    return {
        "rounds": rounds,
        "get_devices_18": percentiles(devices),
        "healthz_no_auth_no_db": percentiles(health),
        "telemetry_batch_of_100": {
            **percentiles(ingest),
            "events_per_second": round(rounds * 100 / ingest_seconds),
        },
    }


if __name__ == "__main__":
    main()
