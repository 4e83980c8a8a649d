"""Print-monitoring benchmarks: the cost of the pure decisions and of one detector call.

- ``smoothing``: ``print_monitoring.update`` per camera frame (3 boxes);
- ``telemetry``: ``evaluate_telemetry`` over 15 minutes of 1 Hz printer states (the
  default rules' window), i.e. the cost of judging one printer once;
- ``detector``: one ``ObicoDetector.detect`` round trip against the local protocol peer
  (tests/peers/obico_peer.py), i.e. the client's own overhead without a model;
- ``snapshot``: one ``HttpSnapshotSource.fetch`` of a 200 KB JPEG-sized body from the local
  camera peer.

Run:  .venv/bin/python benchmarks/monitor_bench.py [--rounds N]
Writes benchmarks/results/monitor_bench.json and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.peers

from tests.peers.camera_peer import CameraPeer  # noqa: E402
from tests.peers.obico_peer import ObicoPeer  # noqa: E402

from kittylab.adapters.detectors.obico import ObicoDetector  # noqa: E402
from kittylab.adapters.detectors.snapshots import HttpSnapshotSource  # noqa: E402
from kittylab.domain.print_monitoring import (  # noqa: E402
    BoundingBox,
    Detection,
    DetectionState,
    update,
)
from kittylab.domain.print_telemetry_rules import PrinterSample, evaluate_telemetry  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "monitor_bench.json"


def timings(fn: Callable[[], object], rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "rounds": rounds,
        "p50_ms": round(statistics.median(samples), 4),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 4),
        "max_ms": round(samples[-1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds

    box = BoundingBox(1, 1, 1, 1)
    detections = [Detection("failure", c, box) for c in (0.3, 0.5, 0.7)]
    state = DetectionState()

    def one_frame() -> None:
        nonlocal state
        state, _ = update(state, detections)

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    history = [
        PrinterSample(
            t0 + timedelta(seconds=s),
            {
                "state": "printing",
                "progress": s / 10000,
                "nozzle": {"actual": 210.0, "target": 210.0},
                "bed": {"actual": 60.0, "target": 60.0},
                "filament_present": True,
            },
        )
        for s in range(900)
    ]

    results: dict[str, object] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "smoothing": timings(one_frame, rounds * 10),
        "telemetry": timings(lambda: evaluate_telemetry(history), rounds),
    }

    with ObicoPeer() as peer, CameraPeer() as camera:
        image = "http://camera.lab/frame.jpg"
        peer.script(image, [("failure", 0.4, (1, 2, 3, 4))] * 3)
        detector = ObicoDetector(peer.base_url, timeout=5)
        snapshot_url = camera.serve("/snapshot.jpg", b"\xff" * 200_000)
        snapshots = HttpSnapshotSource(timeout=5)

        async def measure() -> None:
            for name, call in (
                ("detector", lambda: detector.detect(image)),
                ("snapshot", lambda: snapshots.fetch(snapshot_url)),
            ):
                samples = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    await call()
                    samples.append((time.perf_counter() - started) * 1000)
                samples.sort()
                results[name] = {
                    "rounds": rounds,
                    "p50_ms": round(statistics.median(samples), 3),
                    "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 3),
                    "max_ms": round(samples[-1], 3),
                }

        asyncio.run(measure())

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
