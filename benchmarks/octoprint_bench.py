"""OctoPrint driver timings against a real OctoPrint 1.11.8 and its virtual printer (the
test peer: scripts/octoprint-peer.sh installs it, tests/peers/octoprint.py starts it).

- ``state`` latency: one normalized state read (two or three REST calls);
- pause: ``send(print_pause)`` → the driver's ``state`` reports ``paused`` (OctoPrint says
  ``Pausing``) — the driver's share of issue 4's target "failure event → OctoPrint reports
  Pausing: p95 ≤ 1 s";
- OctoPrint's own ``Pausing`` → ``Paused`` (the buffered moves finishing), for scale;
- resume (sent once OctoPrint says ``Paused``): ``send(print_resume)`` → ``state``
  reports ``printing`` again.

Run:  .venv/bin/python benchmarks/octoprint_bench.py [--rounds N]
Writes benchmarks/results/octoprint_bench.json and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.peers import octoprint as peer  # noqa: E402

from kittylab.adapters.devices.octoprint import OctoPrintDriver  # noqa: E402
from kittylab.devices.ports import DeviceTarget  # noqa: E402
from kittylab.domain.enums import DeviceKind  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "octoprint_bench.json"


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def _until(driver: OctoPrintDriver, device: DeviceTarget, phase: str) -> float:
    started = time.perf_counter()
    while (state := await driver.state(device))["state"] != phase:
        if time.perf_counter() - started > 30:
            raise RuntimeError(f"printer never reported {phase}; last: {state}")
        await asyncio.sleep(0.01)
    return (time.perf_counter() - started) * 1000


async def _octoprint_says(server: peer.OctoPrintPeer, text: str) -> None:
    async with httpx.AsyncClient(headers={"X-Api-Key": server.api_key}, timeout=5) as client:
        started = time.perf_counter()
        while (await client.get(server.url + "/api/job")).json()["state"] != text:
            if time.perf_counter() - started > 30:
                raise RuntimeError(f"OctoPrint never said {text}")
            await asyncio.sleep(0.01)


async def _measure(server: peer.OctoPrintPeer, rounds: int, workdir: Path) -> dict[str, object]:
    device = DeviceTarget(
        id=uuid4(),
        external_id="bench",
        kind=DeviceKind.PRINTER,
        integration="octoprint",
        connection={"url": server.url, "api_key": server.api_key, "port": "VIRTUAL"},
    )
    job = workdir / "bench.gcode"
    job.write_text("G28\n" + "G4 P100\nG1 X1 Y1\n" * 2000)
    driver = OctoPrintDriver(timeout=5, state_wait=30)
    try:
        await driver.send(device, "printer_status", {})
        await driver.upload(device, "bench.gcode", job)
        await driver.send(device, "print_start", {"file": "bench.gcode"})
        await _until(driver, device, "printing")
        reads = []
        for _ in range(rounds * 5):
            started = time.perf_counter()
            await driver.state(device)
            reads.append((time.perf_counter() - started) * 1000)
        pauses, fully_paused, resumes = [], [], []
        for _ in range(rounds):
            started = time.perf_counter()
            await driver.send(device, "print_pause", {})
            await _until(driver, device, "paused")
            pauses.append((time.perf_counter() - started) * 1000)
            await _octoprint_says(server, "Paused")
            fully_paused.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            await driver.send(device, "print_resume", {})
            await _until(driver, device, "printing")
            resumes.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.2)
        await driver.send(device, "print_cancel", {})
    finally:
        await driver.close()
    return {
        "state_read": _percentiles(reads),
        "pause_to_paused": _percentiles(pauses),
        "pause_to_octoprint_paused": _percentiles(fully_paused),
        "resume_to_printing": _percentiles(resumes),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kl-octoprint-bench-") as tmp:
        server = peer.start(Path(tmp) / "octoprint")
        try:
            results = asyncio.run(_measure(server, args.rounds, Path(tmp)))
        finally:
            peer.stop(server)
    report = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "octoprint": "1.11.8 (virtual printer)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
