"""Telemetry benchmark: MQTT → ``TelemetryIngest`` → PostgreSQL, beside a raw ``COPY``.

Run:  .venv/bin/python benchmarks/telemetry_bench.py [--events N] [--rates R …]
Writes benchmarks/results/telemetry_bench.json and prints a summary. Target (issue 4):
≥ 10,000 events/s sustained on this 2-core machine, reported as a ratio to ``COPY``.

A sensor process (``telemetry_publisher.py``, its own GIL) publishes small JSON
readings spread over the demo lab's devices; this process runs the ingest as ``kittylab
serve`` does (a real ``MqttBus``, ``TelemetryIngest`` flushing in a thread) against a
throwaway embedded PostgreSQL. A rate is the events stored divided by the time from the
first publish to the commit of the last row; published must equal stored.

Per broker (the machine's Mosquitto on 127.0.0.1:1883 when it answers; the embedded amqtt
broker in this process, as ``kittylab serve`` runs it; optionally amqtt in a process of
its own) it measures:
- ``receive``: what the bus alone delivers to a handler that only counts (the ceiling
  the MQTT client sets), the sensor flat out. What the subscriber cannot take in time
  the broker drops (Mosquitto does, past its queue limits): ``lost``;
- ``sustained_qos0``: the whole path, the sensor at rising rates (``--rates``,
  ``--step-seconds`` each) until the ingest falls behind; the last rate it kept up with,
  losing nothing;
- ``qos1``: the whole path at QoS 1, the sensor at ``--qos1-rate``.
Without a broker: ``store``, ``store_stream`` on the same events in the ingest's batch
size (the ceiling the database path sets), and ``copy``, the rows of the first sustained
rate copied out and back into the emptied table with one raw ``COPY``.

Every run also says where the CPU went, in µs per event: this process (and its bus-loop
and store threads), the sensor, the broker when it is another process, PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
import telemetry_publisher as sensor
from common import demo_lab, free_port
from cpu_budget import CpuMeter, listener_pid, postgres_pids
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.broker import EmbeddedBroker
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.adapters.db.engine import libpq_url
from kittylab.adapters.db.tables import Device
from kittylab.config import MqttSettings
from kittylab.devices import telemetry
from kittylab.devices.telemetry_ingest import TelemetryIngest
from kittylab.domain import topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "telemetry_bench.json"
TARGET_EVENTS_PER_SECOND = 10_000
STALL_SECONDS = 5.0
"""No progress for this long after the sensor finished: the rest is lost."""
MAX_LAG = 2.0
"""A sustained rate commits the last event within this of its publishing (a flush is
every 0.5 s; a batch of 2,000 takes a fraction of that)."""
BROKERS = ("mosquitto", "embedded", "embedded_own_process")

_COPY_OUT = "COPY telemetry_events (id, device_id, topic, payload, recorded_at) TO STDOUT"
_COPY_IN = "COPY telemetry_events (id, device_id, topic, payload, recorded_at) FROM STDIN"


@dataclass
class Run:
    events_per_s: float
    published: int
    stored: int
    lost: int
    seconds: float
    publish_events_per_s: float
    """How fast the sensor got them out (not the bottleneck when this is higher)."""
    load_before: float
    load_after: float
    cpu_us_per_event: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    ratio_to_copy: float = 0.0


@dataclass(frozen=True)
class _Lab:
    container: bootstrap.Container
    devices: tuple[str, ...]
    postgres: CpuMeter


class _TimedIngest(TelemetryIngest):
    """The real ingest, plus when its last commit happened and what storing cost."""

    last_commit = 0.0
    store_seconds = 0.0
    store_cpu = 0.0
    batches = 0

    async def flush(self) -> None:
        before = self.stored
        await super().flush()
        if self.stored != before:
            self.last_commit = time.monotonic()

    def _store(self, batch: list[telemetry.IncomingEvent]) -> telemetry.StreamResult:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return super()._store(batch)
        finally:
            self.store_seconds += time.perf_counter() - started
            self.store_cpu += time.thread_time() - cpu
            self.batches += 1


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _mosquitto_answers() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 1883), 1):
        return True
    return False


@contextlib.asynccontextmanager
async def _running_bus(address: BrokerAddress) -> AsyncIterator[MqttBus]:
    bus = MqttBus(address, MqttSettings(), role="bench-ingest")
    task = asyncio.create_task(bus.run())
    try:
        if not await bus.wait_connected(10):
            raise RuntimeError(f"no MQTT broker at {address.host}:{address.port}")
        yield bus
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class _Sensor:
    """The publisher process: started and connected before the clock starts."""

    def __init__(self, plan: sensor.PublishPlan) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=sensor.run, args=(plan, child), daemon=True)

    async def __aenter__(self) -> _Sensor:
        self._process.start()
        assert await asyncio.to_thread(self._conn.recv) == "ready"
        return self

    async def publish(self) -> sensor.Published:
        self._conn.send("go")
        published = await asyncio.to_thread(self._conn.recv)
        assert isinstance(published, sensor.Published)
        return published

    async def __aexit__(self, *_: object) -> None:
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()


class _Meters:
    """CPU of this process, its main (bus loop) thread, the broker, PostgreSQL."""

    def __init__(self, postgres: CpuMeter, broker: CpuMeter | None) -> None:
        self._postgres, self._broker = postgres, broker
        self._process = self._thread = 0.0

    def start(self) -> None:
        self._process, self._thread = time.process_time(), time.thread_time()
        self._postgres.start()
        if self._broker is not None:
            self._broker.start()

    def stop(self, events: int, sensor_cpu: float, store_cpu: float | None) -> dict[str, float]:
        spent = {
            "ingest_process": time.process_time() - self._process,
            "ingest_bus_loop_thread": time.thread_time() - self._thread,
        }
        if store_cpu is not None:
            spent["ingest_store_thread"] = store_cpu
        if self._broker is not None:
            spent["broker"] = self._broker.stop()
        spent["postgres"] = self._postgres.stop()
        spent["sensor"] = sensor_cpu
        return {k: round(v / max(events, 1) * 1e6, 1) for k, v in spent.items()}


async def _until_settled(
    progress: Callable[[], int],
    expected: int,
    sensor_done: asyncio.Task[sensor.Published],
    max_lag: float | None = None,
) -> None:
    """Until ``progress()`` reaches ``expected``; or stops moving once the sensor is done;
    or, with ``max_lag``, is still short that long after the sensor's last message."""
    last, last_change = progress(), time.monotonic()
    while last < expected:
        await asyncio.sleep(0.01)
        now = progress()
        if now != last:
            last, last_change = now, time.monotonic()
        if not sensor_done.done():
            continue
        if time.monotonic() - last_change > STALL_SECONDS:
            return
        if max_lag is not None and time.monotonic() - sensor_done.result().last_at > max_lag:
            return


async def _receive_only(
    lab: _Lab, address: BrokerAddress, plan: sensor.PublishPlan, broker: CpuMeter | None
) -> Run:
    received = 0
    last_at = 0.0

    async def count(_: str, __: bytes) -> None:
        nonlocal received, last_at
        received += 1
        last_at = time.monotonic()

    load = _load()
    meters = _Meters(lab.postgres, broker)
    async with _running_bus(address) as bus, _Sensor(plan) as publisher:
        bus.subscribe(topics.TELEMETRY_WILDCARD, count)
        await asyncio.sleep(0.3)  # the subscription reaches the broker
        meters.start()
        sending = asyncio.create_task(publisher.publish())
        await _until_settled(lambda: received, plan.events, sending)
        done = await sending
        cpu = meters.stop(received, done.cpu_seconds, None)
    return _run(done, received, last_at, load, cpu, {})


async def _ingest(
    lab: _Lab,
    address: BrokerAddress,
    plan: sensor.PublishPlan,
    broker: CpuMeter | None,
    args: argparse.Namespace,
    max_lag: float | None = None,
) -> Run:
    """The whole path. With ``max_lag``, gives up on events not stored that long after
    the sensor finished (leaving the bus drops the broker's backlog for it)."""
    container = lab.container
    await asyncio.to_thread(_truncate, container)
    ingest = _TimedIngest(
        container.database,
        container.clock,
        batch_size=args.batch_size,
        flush_seconds=args.flush_seconds,
    )
    load = _load()
    meters = _Meters(lab.postgres, broker)
    async with _running_bus(address) as bus, _Sensor(plan) as publisher:
        ingest.attach(bus)
        await asyncio.sleep(0.3)
        meters.start()
        flushing = asyncio.create_task(ingest.run())
        sending = asyncio.create_task(publisher.publish())
        await _until_settled(
            lambda: ingest.stored + sum(ingest.rejected.values()), plan.events, sending, max_lag
        )
        done = await sending
        cpu = meters.stop(ingest.stored, done.cpu_seconds, ingest.store_cpu)
        flushing.cancel()
        await asyncio.gather(flushing, return_exceptions=True)
    rows, distinct = await asyncio.to_thread(_count_rows, container)
    details = {
        "qos": plan.qos,
        "sensor_rate": plan.rate or "flat out",
        "batch_size": args.batch_size,
        "flush_seconds": args.flush_seconds,
        "batches": ingest.batches,
        "mean_batch": round(ingest.stored / max(ingest.batches, 1)),
        "store_thread_busy": round(ingest.store_seconds / (ingest.last_commit - done.first_at), 3),
        "lag_after_last_publish_s": round(ingest.last_commit - done.last_at, 3),
        "rejected": ingest.rejected,
        "rows_counted": rows,
        # QoS 1 is at-least-once: a broker that gets no PUBACK in time sends it again.
        "duplicates": rows - distinct,
    }
    return _run(done, distinct, ingest.last_commit, load, cpu, details)


async def _ladder(
    lab: _Lab,
    address: BrokerAddress,
    plan: Callable[[int, int, float], sensor.PublishPlan],
    broker: CpuMeter | None,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], bytes | None]:
    """The sensor at each rate of ``--rates`` in turn, ``--step-seconds`` each, until the
    ingest falls behind: loses an event, or commits the last one more than ``MAX_LAG``
    after it was published. The sustained rate is the last step it kept up with; its
    rows are returned too, for the raw ``COPY`` beside it."""
    steps: list[Run] = []
    sustained: Run | None = None
    rows: bytes | None = None
    for rate in args.rates:
        run = await _ingest(
            lab, address, plan(int(rate * args.step_seconds), 0, rate), broker, args, MAX_LAG
        )
        steps.append(run)
        kept_up = run.lost == 0 and run.details["lag_after_last_publish_s"] <= MAX_LAG
        run.details["kept_up"] = kept_up
        if not kept_up:
            break
        sustained = run
        rows = await asyncio.to_thread(_copy_out, lab)
    ladder = {
        "rate_kept_up": sustained.details["sensor_rate"] if sustained else None,
        "events_per_s": sustained.events_per_s if sustained else 0,
        "steps": steps,
    }
    return ladder, rows


def _run(
    done: sensor.Published,
    stored: int,
    last_at: float,
    load: float,
    cpu: dict[str, float],
    details: dict[str, Any],
) -> Run:
    seconds = last_at - done.first_at
    return Run(
        events_per_s=round(stored / seconds) if seconds > 0 else 0,
        published=done.events,
        stored=stored,
        lost=done.events - stored,
        seconds=round(seconds, 3),
        publish_events_per_s=round(done.events / (done.last_at - done.first_at)),
        load_before=load,
        load_after=_load(),
        cpu_us_per_event=cpu,
        details=details,
    )


def _truncate(container: bootstrap.Container) -> None:
    with container.database.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE telemetry_events")
    with container.database.engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")


def _count_rows(container: bootstrap.Container) -> tuple[int, int]:
    """Rows, and distinct events among them (every reading carries its ``seq``)."""
    with container.database.engine.connect() as conn:
        rows, distinct = conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT payload->>'seq') FROM telemetry_events"
        ).one()
        return int(rows), int(distinct)


def _store_only(lab: _Lab, plan: sensor.PublishPlan, batch: int) -> Run:
    """``store_stream`` on the events the ingest would build, batch by batch, no MQTT."""
    container = lab.container
    _truncate(container)
    events = []
    for index in range(plan.events):
        _, _, external_id, name = sensor.topic_of(index, plan.devices).split("/", 3)
        payload = json.loads(sensor.payload_of(index))
        events.append(telemetry.IncomingEvent(None, external_id, name, payload, None))
    load = _load()
    meters = _Meters(lab.postgres, None)
    meters.start()
    started = time.monotonic()
    stored = 0
    for at in range(0, len(events), batch):
        with container.database.unit_of_work() as session:
            result = telemetry.store_stream(session, events[at : at + batch], container.clock())
        stored += result.stored
    ended = time.monotonic()
    cpu = meters.stop(stored, 0.0, None)
    del cpu["sensor"], cpu["ingest_bus_loop_thread"]
    done = sensor.Published(plan.events, started, ended, 0.0)
    return _run(done, stored, ended, load, cpu, {"batch_size": batch})


def _connect(lab: _Lab) -> psycopg.Connection[Any]:
    url = lab.container.database.engine.url.render_as_string(hide_password=False)
    return psycopg.connect(libpq_url(url))


def _copy_out(lab: _Lab) -> bytes:
    """The rows now in the table, in ``COPY``'s text format."""
    data = bytearray()
    with _connect(lab) as conn, conn.cursor() as cursor, cursor.copy(_COPY_OUT) as copy:
        for chunk in copy:
            data += chunk
    return bytes(data)


def _copy_in(lab: _Lab, data: bytes) -> dict[str, Any]:
    """The table emptied, and ``data`` copied in raw in one transaction."""
    with _connect(lab) as conn, conn.cursor() as cursor:
        cursor.execute("TRUNCATE telemetry_events")
        conn.commit()
        cursor.execute("CHECKPOINT")
        load = _load()
        lab.postgres.start()
        started = time.monotonic()
        with cursor.copy(_COPY_IN) as copy:
            view = memoryview(data)
            for at in range(0, len(view), 1 << 20):
                copy.write(view[at : at + (1 << 20)])
        conn.commit()
        seconds = time.monotonic() - started
        postgres_cpu = lab.postgres.stop()
        cursor.execute("SELECT count(*) FROM telemetry_events")
        (rows,) = cursor.fetchone() or (0,)
    return {
        "rows": rows,
        "rows_per_s": round(rows / seconds),
        "seconds": round(seconds, 3),
        "bytes": len(data),
        "postgres_cpu_us_per_row": round(postgres_cpu / max(rows, 1) * 1e6, 1),
        "load_before": load,
        "load_after": _load(),
    }


def _broker_process(port: int, conn: Connection) -> None:
    """The embedded broker alone in a process: how fast amqtt is without sharing a GIL."""

    async def serve() -> None:
        broker = EmbeddedBroker("127.0.0.1", port)
        await broker.start()
        conn.send(os.getpid())
        await asyncio.to_thread(conn.recv)
        await broker.stop()

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def _broker(name: str) -> AsyncIterator[tuple[BrokerAddress, CpuMeter | None]]:
    """The broker's address, and a meter of its CPU when it is another process."""
    if name == "mosquitto":
        pid = await asyncio.to_thread(listener_pid, 1883)
        yield BrokerAddress("127.0.0.1", 1883), CpuMeter(lambda: [pid] if pid else [])
    elif name == "embedded_own_process":
        context = multiprocessing.get_context("spawn")
        conn, child = context.Pipe()
        port = free_port()
        process = context.Process(target=_broker_process, args=(port, child), daemon=True)
        process.start()
        try:
            pid = await asyncio.to_thread(conn.recv)
            yield BrokerAddress("127.0.0.1", port), CpuMeter(lambda: [pid])
        finally:
            conn.send("stop")
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
    else:
        embedded = EmbeddedBroker("127.0.0.1", free_port())
        await embedded.start()
        try:
            yield BrokerAddress(embedded.host, embedded.port), None  # its CPU is ours
        finally:
            await embedded.stop()


async def _bench(container: bootstrap.Container, args: argparse.Namespace) -> dict[str, Any]:
    with container.database.unit_of_work() as session:
        devices = tuple(
            session.scalars(
                select(Device.external_id)
                .where(Device.retired_at.is_(None))
                .order_by(Device.external_id)
            )
        )
        data_directory = str(session.connection().exec_driver_sql("SHOW data_directory").scalar())
    lab = _Lab(container, devices, CpuMeter(lambda: postgres_pids(data_directory)))
    results: dict[str, Any] = {"events": args.events, "devices": len(devices)}
    brokers = list(args.brokers)
    if "mosquitto" in brokers and not _mosquitto_answers():
        print("Mosquitto does not answer on 127.0.0.1:1883: skipping it")
        results["mosquitto"] = {"skipped": "no broker on 127.0.0.1:1883"}
        brokers.remove("mosquitto")
    runs: list[Run] = []
    for name in brokers:
        measured: dict[str, Any] = {}
        async with _broker(name) as (address, meter):

            def plan(
                events: int, qos: int, rate: float, to: BrokerAddress = address
            ) -> sensor.PublishPlan:
                return sensor.PublishPlan(to.host, to.port, devices, events, qos, rate)

            qos0 = plan(args.events, 0, 0)
            measured["receive"] = await _receive_only(lab, address, qos0, meter)
            if args.rates:
                ladder, rows = await _ladder(lab, address, plan, meter, args)
                measured["sustained_qos0"] = ladder
                runs.extend(ladder["steps"])
                if rows and "copy" not in results:
                    # The rows of the first sustained rate, copied raw: the yardstick.
                    results["copy"] = await asyncio.to_thread(_copy_in, lab, rows)
            if args.qos1_events:
                qos1 = plan(args.qos1_events, 1, args.qos1_rate)
                measured["qos1"] = await _ingest(lab, address, qos1, meter, args)
        runs.extend(run for run in measured.values() if isinstance(run, Run))
        results[name] = measured
    if "copy" not in results:  # no rate kept up: whatever the last run stored
        rows = await asyncio.to_thread(_copy_out, lab)
        results["copy"] = await asyncio.to_thread(_copy_in, lab, rows)
    plan = sensor.PublishPlan("", 0, devices, args.events, qos=0, rate=0)
    results["store"] = await asyncio.to_thread(_store_only, lab, plan, args.batch_size)
    runs.append(results["store"])
    copy_rate = results["copy"]["rows_per_s"]
    for run in runs:
        run.ratio_to_copy = round(run.events_per_s / copy_rate, 3)
    for name in brokers:
        if "sustained_qos0" in results[name]:
            ladder = results[name]["sustained_qos0"]
            ladder["ratio_to_copy"] = round(ladder["events_per_s"] / copy_rate, 3)
    plain: dict[str, Any] = _plain(results)
    return plain


def _plain(value: Any) -> Any:
    if isinstance(value, Run):
        return asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _machine() -> dict[str, Any]:
    mosquitto = ""
    executable = shutil.which("mosquitto")
    if executable:
        out = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=5)  # noqa: S603
        mosquitto = out.stdout.splitlines()[0] if out.stdout else ""
    return {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "mosquitto": mosquitto,
        "load_average_1m_at_end": _load(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _summary(results: dict[str, Any]) -> str:
    copy = results["copy"]
    lines = [
        f"raw COPY of the same {copy['rows']:,} rows: {copy['rows_per_s']:,} rows/s "
        f"(PostgreSQL {copy['postgres_cpu_us_per_row']} µs CPU per row)"
    ]

    def line(name: str, key: str, run: dict[str, Any]) -> str:
        cpu = ", ".join(f"{k} {v}" for k, v in run["cpu_us_per_event"].items())
        return (
            f"{name:20} {key:14} {run['events_per_s']:>7,} events/s (×{run['ratio_to_copy']:.2f}"
            f" of COPY) {run['stored']:,}/{run['published']:,} stored, lost {run['lost']}"
            + (f" (+{dup:,} duplicates)" if (dup := run["details"].get("duplicates")) else "")
            + ", "
            f"load {run['load_before']}→{run['load_after']}\n{'':36}CPU µs/event: {cpu}"
        )

    for name in BROKERS:
        for key, run in results.get(name, {}).items():
            if key == "sustained_qos0":
                for step in run["steps"]:
                    rate = f"at {step['details']['sensor_rate']:,.0f}/s"
                    kept = "kept up" if step["details"]["kept_up"] else "fell behind"
                    lines.append(f"{line(name, rate, step)}; {kept}")
                kept = run["rate_kept_up"]
                lines.append(
                    f"{name:20} sustained      {run['events_per_s']:>7,} events/s "
                    f"(×{run['ratio_to_copy']:.2f} of COPY): "
                    + (f"the step at {kept:,.0f}/s, the last kept up with" if kept else "no rate")
                )
            elif key != "skipped":
                lines.append(line(name, key, run))
    lines.append(line("no broker", "store", results["store"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--events", type=int, default=200_000, help="for the receive and store stages"
    )
    parser.add_argument("--qos1-events", type=int, default=45_000, help="0 skips QoS 1")
    parser.add_argument(
        "--qos1-rate",
        type=float,
        default=3_000,
        help="QoS 1 sensor events/s; 0 = flat out (Mosquitto, with its default limits, drops "
        "what its 20 messages in flight to the ingest cannot carry)",
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="*",
        default=[2_000, 3_000, 5_000, 7_500, 10_000, 12_500, 15_000, 17_500, 20_000, 25_000],
        help="sensor rates tried in turn for the sustained rate (none: skip)",
    )
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--flush-seconds", type=float, default=0.5)
    parser.add_argument(
        "--brokers",
        nargs="+",
        choices=BROKERS,
        default=["mosquitto", "embedded"],
        help="embedded = amqtt in this process, as kittylab serve runs it",
    )
    args = parser.parse_args()
    with demo_lab() as container:
        results = asyncio.run(_bench(container, args))
    results["target"] = {
        "events_per_s": TARGET_EVENTS_PER_SECOND,
        "sustained_with": {
            broker: runs["sustained_qos0"]["events_per_s"] >= TARGET_EVENTS_PER_SECOND
            for broker, runs in results.items()
            if broker in BROKERS and "sustained_qos0" in runs
        },
    }
    results["machine"] = _machine()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(_summary(results))


if __name__ == "__main__":
    main()
