"""Moonraker driver latencies against the real Moonraker 0.11.0 on the protocol-level
Klippy the integration tests use: a JSON-RPC command round trip (``printer_status``:
``printer.objects.query`` through Moonraker to Klippy and back), ``state()`` from the pushed
cache, and how long a change on the printer takes to reach the driver's cache (Klipper
batches status every 0.25 s, which bounds it).

The Home Assistant driver is not measured: against the protocol-level peer the numbers
would describe the peer (uvicorn in the test process), not Home Assistant.

Run:  PYTHONPATH=. .venv/bin/python benchmarks/moonraker_bench.py [--rounds N]
Writes benchmarks/results/moonraker_bench.json. Numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from tests.peers.klippy_peer import KlippyPeer
from tests.peers.moonraker_process import MoonrakerProcess, install_moonraker

from kittylab.adapters.devices.moonraker import MoonrakerDriver
from kittylab.devices.ports import DeviceTarget
from kittylab.domain.enums import DeviceKind

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "moonraker_bench.json"


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
        "max_ms": round(ordered[-1], 3),
    }


async def _timed(rounds: int, action: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    await action()  # warm up (connects, subscribes)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return _percentiles(samples)


async def _moonraker(url: str, key: str, klippy: KlippyPeer, rounds: int) -> dict[str, Any]:
    printer = DeviceTarget(
        id=uuid4(),
        external_id="bench",
        kind=DeviceKind.PRINTER,
        integration="moonraker",
        connection={"url": url, "api_key": key},
    )
    driver = MoonrakerDriver()
    try:
        command = await _timed(rounds, lambda: driver.send(printer, "printer_status", {}))
        state = await _timed(rounds, lambda: driver.state(printer))
        push = []
        present = True
        for _ in range(max(5, rounds // 10)):
            present = not present
            await asyncio.to_thread(klippy.set_filament, present)
            started = time.perf_counter()
            while (await driver.state(printer)).get("filament_present") is not present:  # noqa: ASYNC110 - polling the cache is what is measured
                await asyncio.sleep(0.002)
            push.append((time.perf_counter() - started) * 1000)
        return {
            "command_round_trip": command,
            "state_from_cache": state,
            "printer_change_to_cache": _percentiles(push),
        }
    finally:
        await driver.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": platform.platform(), "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="kl-bench-") as tmp:
        work = Path(tmp)
        moonraker = MoonrakerProcess(install_moonraker(), work, work / "klippy.sock")
        moonraker.prepare()
        klippy = KlippyPeer(work / "klippy.sock", moonraker.gcodes)
        klippy.start()
        try:
            moonraker.start()
            results["moonraker"] = asyncio.run(
                _moonraker(moonraker.url, moonraker.api_key(), klippy, args.rounds)
            )
        finally:
            moonraker.stop()
            klippy.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
