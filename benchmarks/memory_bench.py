"""Memory of an idle `kittylab serve` with the demo lab (issue 14: under 400 MB RSS for the
server and its children).

A fresh data directory, the demo lab applied with `kittylab lab apply`, then `kittylab
serve` with its defaults (embedded PostgreSQL, embedded MQTT broker, in-process workers,
the simulated lab; CadQuery workers and the local model load on first use). Once every
device is online the server idles for ``--idle`` seconds, and the whole process tree is
measured: RSS, and PSS/USS where the kernel gives them (RSS counts PostgreSQL's shared
buffers once per backend; PSS shares them out).

Run:  .venv/bin/python benchmarks/memory_bench.py [--idle SECONDS]
Writes benchmarks/results/memory_bench.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import ROOT, free_port, wait_for_server

RESULTS = ROOT / "benchmarks" / "results" / "memory_bench.json"
TARGET_MB = 400


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "kittylab.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout.strip()


def _tree(root: psutil.Process) -> list[dict[str, Any]]:
    rows = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            rows.append(
                {
                    "pid": proc.pid,
                    "name": proc.name(),
                    "cmd": " ".join(proc.cmdline()[:4])[:120],
                    "rss_mb": round(info.rss / 2**20, 1),
                    "pss_mb": round(getattr(info, "pss", 0) / 2**20, 1),
                    "uss_mb": round(getattr(info, "uss", 0) / 2**20, 1),
                }
            )
        except psutil.NoSuchProcess:
            continue
    return rows


def _postgres_of(data_dir: Path) -> list[psutil.Process]:
    """The embedded PostgreSQL's processes (started detached, so not in the tree)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "postgres" in (proc.info.get("name") or "") and str(data_dir) in cmdline:
            found.append(proc)
            found.extend(proc.children(recursive=True))
    return found


def run(idle_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KITTYLAB_")}
        env = {
            **clean,
            "KITTYLAB_DATA_DIR": str(data),
            "KITTYLAB_MQTT__EMBEDDED_PORT": str(free_port()),
            "KITTYLAB_LOG_LEVEL": "WARNING",
        }
        _cli(env, "lab", "apply", str(ROOT / "examples" / "lab.yaml"))
        token = _cli(env, "users", "token", "ada")
        port = free_port()
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "kittylab.cli", "serve", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_server(base + "/healthz", server, log)
            auth = {"Authorization": f"Bearer {token}"}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                items = httpx.get(base + "/api/devices?limit=100", headers=auth).json()["items"]
                if items and all(d["onlineState"] == "online" for d in items):
                    break
                time.sleep(0.5)
            time.sleep(idle_seconds)
            root = psutil.Process(server.pid)
            processes = _tree(root)
            in_tree = {p["pid"] for p in processes}
            postgres = [
                row
                for row in (_tree(p)[0] for p in _postgres_of(data) if p.is_running())
                if row["pid"] not in in_tree
            ]
        finally:
            server.terminate()
            server.wait(timeout=60)
    python = [p for p in processes if p["pid"] == server.pid]
    children = [p for p in processes if p["pid"] != server.pid]
    server_and_children = sum(p["rss_mb"] for p in processes)
    return {
        "idle_seconds": idle_seconds,
        "server_rss_mb": python[0]["rss_mb"] if python else None,
        "children": children,
        "server_and_children_rss_mb": round(server_and_children, 1),
        "embedded_postgres": {
            "processes": len(postgres),
            "rss_mb_sum": round(sum(p["rss_mb"] for p in postgres), 1),
            "pss_mb_sum": round(sum(p["pss_mb"] for p in postgres), 1),
        },
        "everything_pss_mb": round(
            sum(p["pss_mb"] for p in processes) + sum(p["pss_mb"] for p in postgres), 1
        ),
        "target": {
            "server_and_children_rss_mb": TARGET_MB,
            "met": server_and_children < TARGET_MB,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle before measuring")
    args = parser.parse_args()
    result = {
        "benchmark": "memory_idle_serve",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **run(args.idle),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
