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
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.api.app import create_app
from kittylab.config import Settings
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.services import identity

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "api_bench.json"


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 3),
        "max_ms": round(ordered[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp))
        url = server.start()
        try:
            bootstrap.upgrade_database(url)
            settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
            with bootstrap.application(settings, url) as c:
                with c.database.unit_of_work() as s:
                    apply_manifest(s, load_manifest(ROOT / "examples" / "lab.yaml"), c.clock())
                    token = identity.issue_token(s, identity.find_user_by_username(s, "ada")).token
                results = _run(TestClient(create_app(c)), token, args.rounds)
        finally:
            server.stop()
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
        "get_devices_18": _percentiles(devices),
        "healthz_no_auth_no_db": _percentiles(health),
        "telemetry_batch_of_100": {
            **_percentiles(ingest),
            "events_per_second": round(rounds * 100 / ingest_seconds),
        },
    }


if __name__ == "__main__":
    main()
