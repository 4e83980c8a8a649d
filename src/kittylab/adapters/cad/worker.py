"""Warm model-building workers: long-lived subprocesses that have already imported
CadQuery (``worker_main``), so a request costs the build and not the 3 s import.

A worker serves one request at a time. A request that outlives its wall-clock timeout gets
its worker killed; a worker that died (SIGXCPU from its CPU limit, the memory limit, a
crash in OpenCascade) is replaced by a fresh one on the next request. The caller gets
``CadBuildTimeout`` or ``CadWorkerCrashed``; the service process is never affected.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kittylab.adapters import sandbox
from kittylab.domain.cad_spec import PartSpec
from kittylab.domain.errors import Busy, InfrastructureError, ValidationFailed

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class CadBuildFailed(InfrastructureError):
    """The model could not be built."""


class CadBuildTimeout(CadBuildFailed):
    """The build took longer than allowed; its worker was killed."""


class CadWorkerCrashed(CadBuildFailed):
    """The worker process died (CPU or memory limit, a crash in the geometry kernel)."""


class CadWorkersBusy(Busy):
    """Every worker stayed busy for the whole allowed wait; nothing was built."""


@dataclass(frozen=True)
class BuildResult:
    step: Path
    stl: Path
    bbox: tuple[float, float, float]
    valid: bool
    volume: float
    solids: int
    build_ms: float


@dataclass(frozen=True)
class StepCheck:
    """OpenCascade's verdict on a STEP file: every solid valid, how many, their extents."""

    valid: bool
    solids: int
    bbox: tuple[float, float, float] | None
    reason: str | None = None


@dataclass(frozen=True)
class WorkerLimits:
    timeout_seconds: float = 60.0
    cpu_seconds: float = 60.0
    memory_bytes: int = 3 * 1024**3
    start_timeout_seconds: float = 120.0
    stl_tolerance: float = 0.01
    slot_wait_seconds: float = 30.0
    """Longest a request waits for a free worker; the caller's thread (an API request's)
    is held meanwhile, so a burst must not hold it without bound."""


SOURCE_ROOT = Path(__file__).resolve().parents[3]
"""The folder holding the ``kittylab`` package, for the worker's ``PYTHONPATH``."""


def worker_environment() -> dict[str, str]:
    """A clean environment for model-building code (``sandbox.clean_environment``): what
    Python needs to find KittyLab and CadQuery, nothing of the service's own (the database
    URL, API tokens, cloud credentials live in its environment)."""
    return sandbox.clean_environment(extra={"PYTHONPATH": str(SOURCE_ROOT)})


class _Worker:
    def __init__(self, limits: WorkerLimits) -> None:
        self.limits = limits
        env = worker_environment()
        env["KITTYLAB_CAD_WORKER_MEMORY"] = str(limits.memory_bytes)
        # It confines itself (worker_main), so that it may fall back to refusing sockets
        # where the kernel gives no namespace.
        self.process = sandbox.popen(
            [sys.executable, "-m", "kittylab.adapters.cad.worker_main"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buffer = b""
        hello = self._read_line(limits.start_timeout_seconds)
        if not hello.get("ready"):
            self.kill()
            raise CadWorkerCrashed("the CAD worker did not start")
        self.network: str = str(hello.get("network"))
        self.last_used = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise CadBuildTimeout(f"the CAD worker gave no answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.process.wait(timeout=10)
                raise CadWorkerCrashed(f"the CAD worker died (exit status {code})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        decoded: dict[str, Any] = json.loads(line)
        return decoded

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise CadWorkerCrashed("the CAD worker is gone") from exc
        return self._read_line(timeout)

    def check_step(self, step: Path, limits: WorkerLimits) -> StepCheck:
        answer = self._ask(
            {"check_step": str(step), "cpu_seconds": limits.cpu_seconds}, limits.timeout_seconds
        )
        if not answer.get("ok"):
            raise CadBuildFailed(str(answer.get("error", "the STEP check failed")))
        bbox = answer.get("bbox")
        return StepCheck(
            valid=bool(answer["valid"]),
            solids=int(answer["solids"]),
            bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2])) if bbox else None,
            reason=answer.get("reason"),
        )

    def build(self, spec: PartSpec, out_dir: Path, limits: WorkerLimits) -> BuildResult:
        request = {
            "spec": spec.to_json(),
            "out_dir": str(out_dir),
            "cpu_seconds": limits.cpu_seconds,
            "stl_tolerance": limits.stl_tolerance,
        }
        answer = self._ask(request, limits.timeout_seconds)
        if not answer.get("ok"):
            if answer.get("kind") == "validation":
                field, _, message = str(answer.get("error", "")).partition(": ")
                raise ValidationFailed(field or "spec", message or "is not buildable")
            raise CadBuildFailed(str(answer.get("error", "the build failed")))
        x, y, z = answer["bbox"]
        return BuildResult(
            step=Path(answer["step"]),
            stl=Path(answer["stl"]),
            bbox=(float(x), float(y), float(z)),
            valid=bool(answer["valid"]),
            volume=float(answer["volume"]),
            solids=int(answer["solids"]),
            build_ms=float(answer["build_ms"]),
        )


class CadWorkerPool:
    """Up to ``size`` warm workers, started on first use (or by ``warm_up``)."""

    def __init__(self, size: int = 1, limits: WorkerLimits | None = None) -> None:
        self.size = size
        self.limits = limits or WorkerLimits()
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._all: list[_Worker] = []
        self.network_isolation: str | None = None
        self.restarts = 0

    def warm_up(self) -> None:
        """Start one worker now, so the first request does not pay for the import."""
        with self._slots:
            self._release(self._acquire())

    def _acquire(self) -> _Worker:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if worker.alive:
                return worker
            self._forget(worker)
        worker = _Worker(self.limits)
        self.network_isolation = worker.network
        with self._lock:
            self._all.append(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        if worker.alive:
            worker.last_used = time.monotonic()
            self._idle.put(worker)
        else:
            self._forget(worker)

    def release_idle(self, idle_seconds: float) -> int:
        """Stop the workers nobody has used for ``idle_seconds`` (a warm CadQuery worker
        holds some 450 MB); the next build starts one again. Returns how many stopped."""
        cutoff = time.monotonic() - idle_seconds
        keep: list[_Worker] = []
        stopped = 0
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if worker.last_used <= cutoff or not worker.alive:
                worker.kill()
                with self._lock:
                    if worker in self._all:
                        self._all.remove(worker)
                stopped += 1
            else:
                keep.append(worker)
        for worker in reversed(keep):  # a LIFO queue: the most recently used on top again
            self._idle.put(worker)
        if stopped:
            logger.info("stopped %d CAD worker(s) idle for %g s", stopped, idle_seconds)
        return stopped

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        self.restarts += 1

    def build(self, spec: PartSpec, out_dir: Path) -> BuildResult:
        """Build ``spec`` into ``out_dir`` (STEP and STL). Raises ``ValidationFailed`` for a
        spec the library refuses, ``CadBuildTimeout``, ``CadWorkerCrashed`` or
        ``CadBuildFailed``; the worker is replaced after a timeout or crash.
        ``CadWorkersBusy`` when no worker came free within ``limits.slot_wait_seconds``."""
        return self._with_worker(lambda worker: worker.build(spec, out_dir, self.limits))

    def check_step(self, step: Path) -> StepCheck:
        """Read ``step`` in a worker and check its solids (OpenCascade's ``isValid``); an
        unreadable file or one without solids is ``valid=False``. Raises like ``build``."""
        return self._with_worker(lambda worker: worker.check_step(step, self.limits))

    def _with_worker(self, work: Callable[[_Worker], _T]) -> _T:
        wait = self.limits.slot_wait_seconds
        if not self._slots.acquire(timeout=wait):
            raise CadWorkersBusy(
                f"all {self.size} CAD workers stayed busy for {wait:g} s",
                retry_after_seconds=max(wait, 1.0),
            )
        try:
            worker = self._acquire()
            try:
                return work(worker)
            except (CadBuildTimeout, CadWorkerCrashed):
                logger.warning("CAD worker lost; a fresh one replaces it")
                worker.kill()
                raise
            finally:
                self._release(worker)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), []
        for worker in workers:
            worker.kill()
