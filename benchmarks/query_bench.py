"""Query benchmarks: the grammar stage in-process, the embedded local model, and
``POST /api/query`` over HTTP with 16 concurrent clients against ``kittylab serve``
(with ``/healthz`` of the same server under the same load as the yardstick).

Targets (issue 14), as shares of ``/healthz`` in the same run: at 16 clients, turns/s ≥ 0.3 ×
``/healthz`` req/s; at 1 client, p95 ≤ 8 × ``/healthz`` p95. The server's (and PostgreSQL's)
CPU per request is measured too, which does not depend on the machine's other load.

Run:  .venv/bin/python benchmarks/query_bench.py [--requests N] [--model-rounds N] [--clients N…]
Writes benchmarks/results/query_bench.json and prints it. Numbers depend on the machine
and on what else runs on it; compare runs on the same one.
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
import threading
import time
from pathlib import Path

import httpx
from common import CpuMeter, free_port, wait_for_server

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.adapters.llm.llama import EmbeddedLlama, default_model_path, ensure_model_file
from kittylab.config import Settings
from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "query_bench.json"
CORPUS = ROOT / "tests" / "data" / "query_corpus.jsonl"
CLIENTS = 16

# Requests the grammar does not match, so they reach the local model.
MODEL_TEXTS = [
    "the voron needs to pause",
    "kill power to the laser",
    "is the fume sensor ok",
    "make the bench lights brighter to 90 percent",
    "open up the cnc door",
    "could you maybe pause the prusa printer thing",
    "set the bambu nozzle to 230 degrees please mate",
    "shut the welder off right away",
]


def _stats(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
        "max_ms": round(ordered[-1], 3),
    }


def grammar_stage() -> dict[str, object]:
    vocabulary = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
    understander = Understander(None)
    entries = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    texts = [e["text"] for e in entries if e["intent"] not in ("ask", "cad_generate")]
    understander.understand("warm up", vocabulary)
    samples = []
    for _ in range(3):
        for text in texts:
            start = time.perf_counter()
            understander.understand(text, vocabulary, ConversationContext(device="voron-24"))
            samples.append((time.perf_counter() - start) * 1000)
    return {"utterances": len(texts), **_stats(samples)}


def local_model(rounds: int) -> dict[str, object]:
    vocabulary = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
    path = ensure_model_file(default_model_path())
    model = EmbeddedLlama(path, threads=1, timeout_seconds=120)
    start = time.perf_counter()
    model.warm_up(vocabulary)
    warm = time.perf_counter() - start
    samples = []
    for i in range(rounds):
        text = MODEL_TEXTS[i % len(MODEL_TEXTS)]
        start = time.perf_counter()
        model.read(text, vocabulary, ConversationContext())
        samples.append((time.perf_counter() - start) * 1000)
    return {"warm_up_s": round(warm, 2), "threads": 1, **_stats(samples)}


def http_under_load(requests_per_client: int, client_counts: list[int]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        try:
            bootstrap.upgrade_database(url)
            settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
            with bootstrap.application(settings, url) as c, c.database.unit_of_work() as s:
                apply_manifest(s, load_manifest(ROOT / "examples" / "lab.yaml"), c.clock())
                token = identity.issue_token(s, identity.find_user_by_username(s, "olivia")).token
            port = free_port()
            env = {
                **os.environ,
                "KITTYLAB_DATABASE_URL": url,
                "KITTYLAB_DATA_DIR": str(Path(tmp) / "data"),
                "KITTYLAB_SIMULATOR__ENABLED": "false",
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
                cpu = CpuMeter(server.pid, Path(tmp) / "pg")
                query = [
                    _load(base, token, requests_per_client, n, cpu, query=True)
                    for n in client_counts
                ]
                health = [
                    _load(base, token, requests_per_client, n, cpu, query=False)
                    for n in client_counts
                ]
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            pg.stop()
    return {
        "post_query_grammar_device_request": query,
        "healthz_same_load": health,
        "p95_ratio_query_to_healthz": [
            round(q["p95_ms"] / h["p95_ms"], 2) for q, h in zip(query, health, strict=True)
        ],
        "server_cpu_ratio_healthz_to_query": [
            round(h["server_cpu_ms_per_request"] / q["server_cpu_ms_per_request"], 2)
            for q, h in zip(query, health, strict=True)
        ],
        "throughput_ratio_query_to_healthz": [
            round(q["requests_per_second"] / h["requests_per_second"], 2)
            for q, h in zip(query, health, strict=True)
        ],
    }


def _load(
    base: str, token: str, rounds: int, clients: int, cpu: CpuMeter, *, query: bool
) -> dict[str, float]:
    samples: list[float] = []
    lock = threading.Lock()
    texts = ["pause the prusa", "dim the farm lights to thirty percent", "status of the voron",
             "turn on the bench lights"]  # fmt: skip

    def client(n: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        conversation = None
        mine = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            for i in range(rounds + 3):
                start = time.perf_counter()
                if query:
                    body: dict[str, object] = {
                        "channel": "cli", "input": {"text": texts[(n + i) % len(texts)]},
                    }  # fmt: skip
                    if conversation:
                        body["conversationId"] = conversation
                    r = http.post("/api/query", json=body)
                    conversation = r.json()["conversationId"]
                    assert r.json()["routing"]["selectedTier"] == "local", r.text
                else:
                    r = http.get("/healthz")
                elapsed = (time.perf_counter() - start) * 1000
                assert r.status_code < 300, r.text
                if i >= 3:  # the first requests open connections and conversations
                    mine.append(elapsed)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    before = cpu.read()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        **_stats(samples),
        "requests_per_second": round(len(samples) / wall, 1),
        **CpuMeter.per_request(before, cpu.read(), clients * (rounds + 3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40, help="per client")
    parser.add_argument("--model-rounds", type=int, default=16, help="0 skips the local model")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, CLIENTS])
    args = parser.parse_args()
    results: dict[str, object] = {
        "grammar_stage_in_process": grammar_stage(),
        "http": http_under_load(args.requests, args.clients),
        "local_model_embedded": local_model(args.model_rounds) if args.model_rounds else None,
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
