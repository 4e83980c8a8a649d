"""CAD benchmark: offline CadQuery generation from request to STEP and STL stored, with a
warm worker, through the real HTTP API (in-process) on an embedded PostgreSQL and the
folder artifact store. Each request parses the prompt, builds the model in the worker,
exports STEP and STL, scores the mesh, renders the preview, stores three files and
records the job and artifacts.

Run:  .venv/bin/python benchmarks/cad_bench.py [--rounds N]
Writes benchmarks/results/cad_bench.json and prints a summary. Target: p50 ≤ 3 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.api.app import create_app
from kittylab.config import Settings
from kittylab.people import identity

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cad_bench.json"
CORPUS = ROOT / "tests" / "data" / "cad_prompts.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    prompts = [entry["prompt"] for entry in yaml.safe_load(CORPUS.read_text())]
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp))
        url = server.start()
        try:
            bootstrap.upgrade_database(url)
            settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
            with bootstrap.application(settings, url) as c:
                with c.database.unit_of_work() as s:
                    user = identity.create_user(
                        s, username="bench", display_name="Bench", roles=["engineer"]
                    )
                    token = identity.issue_token(s, user).token
                started = time.perf_counter()
                c.cad_pool.warm_up()
                warm_up_s = time.perf_counter() - started
                results = _run(TestClient(create_app(c)), token, prompts, args.rounds)
                results["worker_warm_up_s"] = round(warm_up_s, 2)
                results["network_isolation"] = c.cad_pool.network_isolation
        finally:
            server.stop()
    results["machine"] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _run(client: TestClient, token: str, prompts: list[str], rounds: int) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    samples: list[float] = []
    by_family: dict[str, list[float]] = {}
    # Spread over the corpus so every family is measured, not just the cheapest.
    chosen = [prompts[(i * len(prompts)) // rounds % len(prompts)] for i in range(rounds)]
    for prompt in chosen:
        start = time.perf_counter()
        answer = client.post(
            "/api/cad/generate", json={"prompt": prompt, "policyMode": "offline"}, headers=headers
        )
        elapsed = (time.perf_counter() - start) * 1000
        assert answer.status_code == 202, answer.text
        body = answer.json()
        kinds = {a["artifactType"] for a in body["artifacts"]}
        assert {"step", "stl"} <= kinds, kinds
        samples.append(elapsed)
        by_family.setdefault(body["spec"]["family"], []).append(elapsed)
    ordered = sorted(samples)
    return {
        "benchmark": "offline cadquery: POST /api/cad/generate → STEP + STL + preview stored",
        "rounds": len(samples),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
        "target_p50_ms": 3000,
        "p50_by_family_ms": {
            family: round(statistics.median(values), 1)
            for family, values in sorted(by_family.items())
        },
    }


if __name__ == "__main__":
    main()
