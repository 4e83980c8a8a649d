"""Bambu LAN-mode driver: connection set-up, request round trip and state reads, measured
against the test peers (Mosquitto with TLS on loopback and the protocol-level printer).

Run:  .venv/bin/python benchmarks/bambu_bench.py [--rounds N]
Writes benchmarks/results/bambu_bench.json and prints a summary. Loopback numbers: they
show the driver's own overhead, not a printer's (a real printer answers over Wi-Fi, and a
P1 printer's MQTT broker is much slower than Mosquitto).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.peers.bambu_peer import BambuPrinterPeer  # noqa: E402
from tests.peers.tls_mosquitto import start_tls_mosquitto  # noqa: E402

from kittylab.adapters.devices.bambu import BambuDriver  # noqa: E402
from kittylab.devices.ports import DeviceTarget  # noqa: E402
from kittylab.domain.enums import DeviceKind  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bambu_bench.json"
SERIAL = "01S00C371400123"
CODE = "24681357"


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
        "max_ms": round(ordered[-1], 3),
    }


async def measure(host: str, port: int, ca_file: Path, rounds: int) -> dict[str, object]:
    os.environ["KL_BENCH_BAMBU_CODE"] = CODE
    device = DeviceTarget(
        id=uuid4(),
        external_id="bench-x1c",
        kind=DeviceKind.PRINTER,
        integration="bambu",
        connection={
            "host": host,
            "port": port,
            "serial": SERIAL,
            "access_code": "${KL_BENCH_BAMBU_CODE}",
            "ca_file": str(ca_file),
        },
    )
    peer = BambuPrinterPeer(host=host, port=port, ca_file=ca_file, serial=SERIAL, access_code=CODE)
    async with peer:
        peer.running = False  # no background reports competing with the measurement
        connects: list[float] = []
        for _ in range(max(5, rounds // 20)):
            driver = BambuDriver(timeout=5)
            started = time.perf_counter()
            await driver.state(device)  # TLS, CONNACK, subscribe, pushall, first report
            connects.append((time.perf_counter() - started) * 1000)
            await driver.close()

        driver = BambuDriver(timeout=5)
        await driver.state(device)
        sends: list[float] = []
        for i in range(rounds):
            started = time.perf_counter()
            await driver.send(device, "printer_heat", {"nozzle": 100 + i % 50})
            sends.append((time.perf_counter() - started) * 1000)
        reads: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            await driver.state(device)
            reads.append((time.perf_counter() - started) * 1000)
        await driver.close()
    return {
        "connect_and_first_status": _percentiles(connects),
        "send_until_printer_echo": _percentiles(sends),
        "state_from_cache": _percentiles(reads),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kl-bambu-bench-") as tmp:
        broker = start_tls_mosquitto(Path(tmp), server_name=SERIAL, username="bblp", password=CODE)
        try:
            results = asyncio.run(measure(broker.host, broker.port, broker.ca_file, args.rounds))
        finally:
            broker.stop()
    report = {
        "benchmark": "bambu_driver",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "rounds": args.rounds,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
