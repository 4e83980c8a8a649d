"""What the in-process benchmarks share: the demo lab on a throwaway embedded PostgreSQL,
and latency percentiles. Imported by scripts run as ``python benchmarks/<name>.py``."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.config import Settings
from kittylab.manifest import apply_manifest, load_manifest

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def demo_lab() -> Iterator[bootstrap.Container]:
    """A wired container on a fresh embedded PostgreSQL with the demo lab applied."""
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp))
        url = server.start()
        try:
            bootstrap.upgrade_database(url)
            settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
            with bootstrap.application(settings, url) as container:
                with container.database.unit_of_work() as s:
                    lab = load_manifest(ROOT / "examples" / "lab.yaml")
                    apply_manifest(s, lab, container.clock())
                yield container
        finally:
            server.stop()


def percentiles(samples_ms: list[float], digits: int = 3) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), digits),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], digits),
        "max_ms": round(ordered[-1], digits),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_server(
    url: str, proc: subprocess.Popen[bytes], log: Path | None = None, within: float = 120
) -> None:
    """Wait until ``url`` answers 200; quote the server's log when it dies or never does."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log is not None else ""
    raise RuntimeError(f"kittylab serve did not start (exit {proc.poll()}):\n{tail}")


class CpuMeter:
    """CPU time (user + system) the server process and the PostgreSQL processes under
    ``pg_dir`` spend: a measure that does not depend on what else the machine runs, unlike
    wall-clock latency (the throughput of a CPU-bound server is its CPU per request)."""

    def __init__(self, server_pid: int, pg_dir: Path | None = None) -> None:
        import psutil

        self.server = psutil.Process(server_pid)
        self._pg_dir = str(pg_dir) if pg_dir is not None else None

    def _postgres(self) -> float:
        import psutil

        if self._pg_dir is None:
            return 0.0
        total = 0.0
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                if "postgres" not in (proc.info.get("name") or ""):
                    continue
                if any(self._pg_dir in part for part in proc.info.get("cmdline") or []) or (
                    proc.parent() is not None
                    and any(self._pg_dir in p for p in proc.parent().cmdline())
                ):
                    times = proc.cpu_times()
                    total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def read(self) -> tuple[float, float]:
        times = self.server.cpu_times()
        return times.user + times.system, self._postgres()

    @staticmethod
    def per_request(
        before: tuple[float, float], after: tuple[float, float], n: int
    ) -> dict[str, float]:
        return {
            "server_cpu_ms_per_request": round((after[0] - before[0]) * 1000 / n, 2),
            "postgres_cpu_ms_per_request": round((after[1] - before[1]) * 1000 / n, 2),
        }


def start_serve(
    env: dict[str, str], port: int, folder: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """``kittylab serve`` on ``port`` with ``env``, and the file its output goes to
    (``BENCH_SERVE_LOG``, or ``serve.log`` in ``folder``)."""
    log = Path(os.environ.get("BENCH_SERVE_LOG", str(folder / "serve.log")))
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "kittylab.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return server, log
