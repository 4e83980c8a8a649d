"""State answers (issue 16): the whole held-out state-question corpus (109 questions,
tests/data/conversation/state_questions.jsonl) asked over HTTP of ``kittylab serve`` on
the demo lab with a known state (tests/state_answers_corpus.py), scored (right kind,
device or zone, every expected value in the reply), and the cost of a state answer beside
a grammar-tier device turn and ``/healthz`` in the same run, one client at a time.

Targets: ≥ 95 % right; a state answer's p50 ≤ 2 × a grammar-tier device turn's p50.

Run:  .venv/bin/python benchmarks/state_answers_bench.py [--rounds N]
Writes benchmarks/results/state_answers_bench.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import free_port, wait_for_server
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the corpus's seed and scoring live with the tests

from tests import state_answers_corpus as corpus  # noqa: E402

from kittylab import bootstrap  # noqa: E402
from kittylab.adapters.db.embedded import EmbeddedPostgres  # noqa: E402
from kittylab.adapters.db.tables import Device, Zone  # noqa: E402
from kittylab.config import Settings  # noqa: E402
from kittylab.manifest import apply_manifest, load_manifest  # noqa: E402
from kittylab.people import identity  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "state_answers_bench.json"
DEVICE_TURNS = ["dim the farm lights to thirty percent", "turn on the bench lights"]


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2),
        "max_ms": round(ordered[-1], 2),
    }


def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        try:
            bootstrap.upgrade_database(url)
            settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
            with bootstrap.application(settings, url) as c:
                with c.database.unit_of_work() as s:
                    apply_manifest(s, load_manifest(ROOT / "examples" / "lab.yaml"), c.clock())
                with c.database.unit_of_work() as s:
                    corpus.seed(s, c.clock())
                    tokens = {
                        name: identity.issue_token(s, identity.find_user_by_username(s, name)).token
                        for name in (corpus.ASKER, "olivia")
                    }
                    devices = {
                        d.external_id: (d.kind.value, zone)
                        for d, zone in s.execute(
                            select(Device, Zone.name).join(Zone, Zone.id == Device.zone_id)
                        ).all()
                    }
            port = free_port()
            env = {
                **os.environ,
                "KITTYLAB_DATABASE_URL": url,
                "KITTYLAB_DATA_DIR": str(Path(tmp) / "data"),
                "KITTYLAB_SIMULATOR__ENABLED": "false",
                # The seeded readings stay within the simulated devices' reporting interval
                # for the whole run, so every answer is from stored state (a stale one would
                # wait for a device no simulator answers here).
                "KITTYLAB_SIMULATOR__REPORT_INTERVAL_SECONDS": "3600",
                "KITTYLAB_JOBS__RUN_IN_SERVER": "false",
                "KITTYLAB_QUERY__MODEL__BACKEND": "none",
                "KITTYLAB_LOG_LEVEL": "WARNING",
            }
            server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "kittylab.cli", "serve", "--port", str(port),
                 "--no-workers"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for_server(base + "/healthz", server)
                return _measure(base, tokens, devices, rounds)
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            pg.stop()


def _ask(http: httpx.Client, token: str, text: str) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    r = http.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": text}},
        headers={"Authorization": f"Bearer {token}"},
    )
    elapsed = (time.perf_counter() - start) * 1000
    assert r.status_code in (200, 202), r.text
    return dict(r.json()), elapsed


def _measure(
    base: str, tokens: dict[str, str], devices: dict[str, tuple[str, str]], rounds: int
) -> dict[str, Any]:
    asker = tokens[corpus.ASKER]
    entries = corpus.load()
    with httpx.Client(base_url=base, timeout=60) as http:
        held, _ = _ask(http, tokens["olivia"], "unlock the laser door")
        assert held["routing"]["outcome"] == "pending_hazard", held
        for text in ("hello", DEVICE_TURNS[0], entries[0].text):  # warm every path once
            _ask(http, tokens["olivia"], text)
        scores = []
        answer_ms: list[float] = []
        device_ms: list[float] = []
        health_ms: list[float] = []
        for round_ in range(rounds):
            for i, entry in enumerate(entries):
                body, ms = _ask(http, asker, entry.text)
                answer_ms.append(ms)
                # Interleaved, so both see the same machine load.
                _, dms = _ask(http, tokens["olivia"], DEVICE_TURNS[i % len(DEVICE_TURNS)])
                device_ms.append(dms)
                start = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                health_ms.append((time.perf_counter() - start) * 1000)
                if round_ == 0:
                    # The decision as recorded, with its details (kind, devices, zone).
                    logs = http.get(
                        "/api/routing/logs",
                        params={"conversationId": body["conversationId"]},
                        headers={"Authorization": f"Bearer {asker}"},
                    ).json()
                    answer = logs["items"][0]["details"].get("answer")
                    scores.append(corpus.score(entry, body["replies"][0]["text"], answer, devices))
    right = sum(s.right for s in scores)
    by_kind: dict[str, list[int]] = {}
    for entry, s in zip(entries, scores, strict=True):
        by_kind.setdefault(entry.kind, [0, 0])
        by_kind[entry.kind][0] += s.right
        by_kind[entry.kind][1] += 1
    answers, turns = _stats(answer_ms), _stats(device_ms)
    return {
        "corpus": {
            "questions": len(scores),
            "right": right,
            "share_right": round(right / len(scores), 4),
            "target": 0.95,
            "by_kind": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_kind.items())},
            "misses": [
                {
                    "text": s.text,
                    "kind_ok": s.kind_ok,
                    "target_ok": s.target_ok,
                    "missing": s.missing,
                    "reply": s.reply,
                }
                for s in scores
                if not s.right
            ],
        },
        "cost": {
            "rounds": rounds,
            "state_answer": answers,
            "grammar_device_turn": turns,
            "healthz": _stats(health_ms),
            "p50_ratio_answer_to_device_turn": round(answers["p50_ms"] / turns["p50_ms"], 2),
            "target_ratio": 2.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2, help="passes over the corpus")
    args = parser.parse_args()
    results = {
        **run(args.rounds),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
