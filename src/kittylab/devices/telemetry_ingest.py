"""Telemetry from the message bus, written in batches.

- ``kitty/telemetry/<external_id>/<topic…>``: any device's measurements, stored under
  ``<topic…>`` (the reserved ``state`` topic is refused here: a device's state comes only
  from its integration).
- ``kitty/devices/<external_id>/state``: the state of the devices that report themselves
  on the bus, generic MQTT devices (integration ``mqtt``) and the simulated lab
  (``simulated``, a process of its own speaking MQTT only: issue 14), stored as their
  ``state`` telemetry, which keeps them online. The broker's ACL lets each identity
  publish only its own devices' states (``domain.bus_acl``).

Messages are buffered and flushed every ``flush_seconds`` or at ``batch_size`` events, in
a thread, so a burst of sensor data costs one transaction, not one per message. A state
is flushed within ``state_flush_seconds`` (50 ms) instead: it is what a device's
online state, the API's last known state and a command's reply are read from, so a
simulated lab applied to a running server is online within a second, and a burst of
states still costs one transaction per 50 ms. Payloads are JSON when they parse, else
stored as text.

One message cannot poison the rest (issue 13). Each event is judged on its own before it
joins the batch's ``COPY`` (``telemetry.store_stream``): over 64 KiB, not storable (NaN,
Infinity, NUL characters, too deep), a number no float holds, from an unknown device, or a
state its device's kind cannot have, it is dropped, counted
(``kittylab_telemetry_events_total{outcome="rejected_<reason>"}``) and logged once per
device and reason every few minutes. Should a batch still fail for a reason nobody
foresaw, it is split in halves until the event that fails alone is found and dropped
(``rejected_unstorable``); only a lost database keeps a batch whole for the next round.

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

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from kittylab.adapters.db.engine import Database
from kittylab.devices import telemetry
from kittylab.domain import topics
from kittylab.domain.records import MAX_TELEMETRY_BYTES
from kittylab.ports import MessageBus

log = logging.getLogger(__name__)

BUS_INTEGRATIONS = frozenset({"mqtt", "simulated"})
"""The integrations whose devices publish their own state on the bus."""


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
        state_flush_seconds: float = 0.05,
    ) -> None:
        self._database = database
        self._clock = clock
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._state_flush_seconds = state_flush_seconds
        self._soon: asyncio.TimerHandle | None = None
        self._buffer: list[telemetry.IncomingEvent] = []
        self._full = asyncio.Event()
        self._max_buffered = 50 * batch_size  # 100,000 by default: seconds of a DB outage
        self.stored = 0
        self.rejected: dict[str, int] = {}
        self._refusals = telemetry.RefusalLog(log)

    def attach(self, bus: MessageBus) -> None:
        bus.subscribe(topics.TELEMETRY_WILDCARD, self._on_telemetry)
        bus.subscribe(topics.DEVICE_STATE_WILDCARD, self._on_device_state)

    async def _on_telemetry(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/", 3)
        device = parts[2] if len(parts) > 2 else topic
        if len(payload) > MAX_TELEMETRY_BYTES:
            # Before decoding: a huge payload costs nothing more.
            self._reject("too_large", device, f"{len(payload)} bytes")
            return
        if len(parts) < 4 or not parts[3]:
            self._reject("invalid", device, "no topic after the device id")
            return
        external_id, name = parts[2], parts[3]
        if name.lower() == telemetry.STATE_TOPIC:
            self._reject("reserved_topic", device, "a state comes only from its integration")
            return
        self._add(telemetry.IncomingEvent(None, external_id, name, _decode(payload), None))

    async def _on_device_state(self, topic: str, payload: bytes) -> None:
        external_id = topics.device_of(topic)
        if external_id is None or not payload:
            return  # an empty retained message clears the topic: nothing to store
        event = telemetry.IncomingEvent(
            None, external_id, telemetry.STATE_TOPIC, _decode(payload), None, BUS_INTEGRATIONS
        )
        self._add(event)
        if self._soon is None and not self._full.is_set():
            self._soon = asyncio.get_running_loop().call_later(
                self._state_flush_seconds, self._full.set
            )

    def _add(self, event: telemetry.IncomingEvent) -> None:
        if len(self._buffer) >= self._max_buffered:
            # The database is slower than the devices.
            self._reject("buffer_full", event.external_id or "?", "the database is behind")
            return
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_size:
            self._full.set()

    def _reject(self, reason: str, device: str, detail: str) -> None:
        self._count(reason, 1)
        self._refusals(telemetry.Refusal(device, reason, detail))

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
        """Store what is buffered. A batch that fails is split in halves, each stored on
        its own, down to the single event that fails alone, which is dropped: one event
        can cost at most itself (and ``log2(batch)`` extra transactions). A lost database
        is different: then the rest is kept for the next round, bounded."""
        self._full.clear()
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if not self._buffer:
            return
        parts, self._buffer = [self._buffer], []
        while parts:
            batch = parts.pop()
            try:
                result = await asyncio.to_thread(self._store, batch)
            except Exception as exc:
                if _database_lost(exc):
                    left = [event for part in reversed(parts) for event in part]
                    log.warning(
                        "telemetry batch of %d could not be stored (%s); retrying",
                        len(batch) + len(left),
                        type(exc).__name__,
                    )
                    self._buffer = (batch + left + self._buffer)[-self._max_buffered :]
                    return
                if len(batch) == 1:
                    [event] = batch
                    self._count("unstorable", 1)
                    self._refusals(
                        telemetry.Refusal(
                            event.external_id or str(event.device_id),
                            "unstorable",
                            f"{type(exc).__name__}: {exc}"[:300],
                        )
                    )
                    continue
                middle = len(batch) // 2
                parts += [batch[middle:], batch[:middle]]  # popped first half first
                continue
            self.stored += result.stored
            for reason, count in result.rejected.items():
                self.rejected[reason] = self.rejected.get(reason, 0) + count
            for refusal in result.refusals:
                self._refusals(refusal)

    def _count(self, reason: str, count: int) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count
        telemetry.TELEMETRY_EVENTS.labels(f"rejected_{reason}").inc(count)

    def _store(self, batch: list[telemetry.IncomingEvent]) -> telemetry.StreamResult:
        with self._database.unit_of_work() as session:
            return telemetry.store_stream(session, batch, self._clock())


def _database_lost(error: Exception) -> bool:
    """The database is away (down, restarting, unreachable, pool exhausted, a statement
    cancelled): no event is to blame, so the batch is kept whole, not split."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OperationalError | InterfaceError | DisconnectionError | PoolTimeout)


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace")
