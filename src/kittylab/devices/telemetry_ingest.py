"""Telemetry from the message bus, written in batches.

- ``kitty/telemetry/<external_id>/<topic…>``: any device's measurements, stored under
  ``<topic…>`` (the reserved ``state`` topic is refused here: a device's state comes only
  from its integration).
- ``kitty/devices/<external_id>/state``: the state of generic MQTT devices (integration
  ``mqtt``), stored as their ``state`` telemetry, which keeps them online.

Messages are buffered and flushed every ``flush_seconds`` or at ``batch_size`` events, in
a thread, so a burst of sensor data costs one transaction, not one per message. Payloads
are JSON when they parse, else stored as text; over 64 KiB, not storable (NaN, NUL
characters) or from an unknown device, they are dropped and counted
(``kittylab_telemetry_events_total``).

Throughput (``benchmarks/telemetry_bench.py``): with Mosquitto, most of the CPU per event
goes to receiving it (paho-mqtt under aiomqtt), not to storing it; the embedded amqtt
broker, running in the same process, costs several times more than everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kittylab.adapters.db.engine import Database
from kittylab.devices import telemetry
from kittylab.domain import topics
from kittylab.domain.records import MAX_TELEMETRY_BYTES
from kittylab.ports import MessageBus

log = logging.getLogger(__name__)

MQTT_INTEGRATION = "mqtt"


class TelemetryIngest:
    def __init__(
        self,
        database: Database,
        clock: Callable[[], datetime],
        *,
        # 2,000 rather than 500: a batch has a fixed cost (a transaction, three
        # statements) that at 500 was a third of the storing thread's CPU, and at high
        # rates the two threads contend for the GIL. Low rates still flush every 0.5 s.
        batch_size: int = 2000,
        flush_seconds: float = 0.5,
    ) -> None:
        self._database = database
        self._clock = clock
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._buffer: list[telemetry.IncomingEvent] = []
        self._full = asyncio.Event()
        self._max_buffered = 50 * batch_size  # 100,000 by default: seconds of a DB outage
        self.stored = 0
        self.rejected: dict[str, int] = {}

    def attach(self, bus: MessageBus) -> None:
        bus.subscribe(topics.TELEMETRY_WILDCARD, self._on_telemetry)
        bus.subscribe(topics.DEVICE_STATE_WILDCARD, self._on_device_state)

    async def _on_telemetry(self, topic: str, payload: bytes) -> None:
        if len(payload) > MAX_TELEMETRY_BYTES:
            self._reject("too_large")  # before decoding: a huge payload costs nothing more
            return
        parts = topic.split("/", 3)
        if len(parts) < 4 or not parts[3]:
            self._reject("invalid")
            return
        external_id, name = parts[2], parts[3]
        if name.lower() == telemetry.STATE_TOPIC:
            self._reject("reserved_topic")
            return
        self._add(telemetry.IncomingEvent(None, external_id, name, _decode(payload), None))

    async def _on_device_state(self, topic: str, payload: bytes) -> None:
        external_id = topics.device_of(topic)
        if external_id is None or not payload:
            return  # an empty retained message clears the topic: nothing to store
        event = telemetry.IncomingEvent(
            None, external_id, telemetry.STATE_TOPIC, _decode(payload), None, MQTT_INTEGRATION
        )
        self._add(event)

    def _add(self, event: telemetry.IncomingEvent) -> None:
        if len(self._buffer) >= self._max_buffered:
            self._reject("buffer_full")  # the database is slower than the devices
            return
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_size:
            self._full.set()

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        telemetry.TELEMETRY_EVENTS.labels(f"rejected_{reason}").inc()

    async def run(self) -> None:
        """Flush until cancelled; what is buffered when cancelled is flushed first."""
        try:
            while True:
                # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a
                # cancellation that arrives as the batch fills, and this loop never ends.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_seconds):
                        await self._full.wait()
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        self._full.clear()
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        try:
            result = await asyncio.to_thread(self._store, batch)
        except Exception:
            # The database is away: keep the events for the next round rather than lose
            # them, up to a bound so a long outage cannot exhaust memory.
            log.exception("telemetry batch of %d could not be stored; retrying", len(batch))
            self._buffer = (batch + self._buffer)[-self._max_buffered :]
            return
        self.stored += result.stored
        for reason, count in result.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def _store(self, batch: list[telemetry.IncomingEvent]) -> telemetry.StreamResult:
        with self._database.unit_of_work() as session:
            return telemetry.store_stream(session, batch, self._clock())


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace")
