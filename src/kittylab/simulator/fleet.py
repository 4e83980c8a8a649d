"""Run the simulated devices of the lab: advance them in time and report their state as
telemetry (topic ``state``), which keeps them online and gives the API their live state.

Attached to the message bus, the fleet is also the devices' MQTT side: it takes commands
from ``kitty/devices/<id>/cmd`` and publishes each device's state, retained, on
``kitty/devices/<id>/state`` (refusals on ``…/reply``), exactly as a generic MQTT device
does — so commands to the demo lab travel the same path as commands to real equipment,
from any worker process.

Only ``kittylab serve`` runs a fleet (one per lab); worker processes do not, so a scaled-out
lab does not simulate the same printer twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.devices import telemetry
from kittylab.domain import topics
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused
from kittylab.ports import MessageBus

log = logging.getLogger(__name__)

SIMULATED = "simulated"
STATE_TOPIC = telemetry.STATE_TOPIC


class Simulator(Protocol):
    external_id: str

    def handle(self, intent: str, payload: Mapping[str, Any]) -> None: ...
    def tick(self, seconds: float) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...


SimulatorFactory = Callable[[DeviceKind, str, Mapping[str, Any]], Simulator]


class SimulatedFleet:
    """The simulators of every active device on the ``simulated`` integration."""

    def __init__(
        self, database: Database, factory: SimulatorFactory, clock: Callable[[], datetime]
    ) -> None:
        self._database = database
        self._factory = factory
        self._clock = clock
        self.devices: dict[UUID, Simulator] = {}
        self._bus: MessageBus | None = None

    def attach(self, bus: MessageBus) -> None:
        """Take commands from the bus and publish states on it."""
        self._bus = bus
        bus.subscribe(topics.DEVICE_COMMAND_WILDCARD, self._on_command)

    def _by_external_id(self, external_id: str) -> tuple[UUID, Simulator] | None:
        # A copy: ``reload`` may change the mapping from a thread meanwhile.
        for device_id, simulator in list(self.devices.items()):
            if simulator.external_id == external_id:
                return device_id, simulator
        return None

    async def _on_command(self, topic: str, raw: bytes) -> None:
        external_id = topics.device_of(topic)
        found = self._by_external_id(external_id) if external_id else None
        if found is None:
            return  # not one of ours: a real MQTT device with its own firmware
        device_id, simulator = found
        try:
            message = json.loads(raw)
            intent, payload = str(message["intent"]), message.get("payload") or {}
            request_id = message.get("requestId")
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed command on %s", topic)
            return
        try:
            simulator.handle(intent, payload)
        except DeviceRefused as refusal:
            self._reply(simulator.external_id, request_id, str(refusal))
            return
        self._publish_state(simulator)
        # Stored at once too, so the API's last known state follows the command.
        await asyncio.to_thread(self._store, [(device_id, simulator)])

    def _reply(self, external_id: str, request_id: Any, reason: str) -> None:
        if self._bus is not None:
            self._bus.publish(
                topics.device_reply(external_id),
                {"requestId": request_id, "ok": False, "reason": reason},
            )

    def _publish_state(self, simulator: Simulator) -> None:
        if self._bus is not None:
            self._bus.publish(
                topics.device_state(simulator.external_id), simulator.snapshot(), retain=True
            )

    def reload(self) -> None:
        """Follow the lab: simulate new devices, drop retired ones, keep the state of the
        rest (a reload must not reset a printer mid-job)."""
        with self._database.unit_of_work() as session:
            rows = session.execute(
                select(Device.id, Device.kind, Device.external_id, Device.attributes).where(
                    Device.integration == SIMULATED, Device.retired_at.is_(None)
                )
            ).all()
        current = {row.id for row in rows}
        for device_id in list(self.devices):
            if device_id not in current:
                del self.devices[device_id]
        for row in rows:
            if row.id not in self.devices:
                self.devices[row.id] = self._factory(row.kind, row.external_id, row.attributes)

    def advance(self, seconds: float) -> None:
        for simulator in self.devices.values():
            simulator.tick(seconds)

    def report(self) -> int:
        """Store every device's state as one telemetry batch (and publish it on the bus
        when attached); returns how many."""
        if not self.devices:
            return 0
        devices = list(self.devices.items())
        for _, simulator in devices:
            self._publish_state(simulator)
        return self._store(devices)

    def _store(self, devices: list[tuple[UUID, Simulator]]) -> int:
        now = self._clock()
        events = [
            telemetry.IncomingEvent(device_id, None, STATE_TOPIC, sim.snapshot(), now)
            for device_id, sim in devices
        ]
        with self._database.unit_of_work() as session:
            return telemetry.store_batch(session, events, now)


class Fleet(Protocol):
    def reload(self) -> None: ...
    def advance(self, seconds: float) -> None: ...
    def report(self) -> int: ...


async def run_fleet(
    fleet: Fleet,
    *,
    tick_seconds: float = 1.0,
    report_every_seconds: float = 10.0,
    reload_every_seconds: float = 30.0,
) -> None:
    """Run until cancelled. Database work happens in a thread so the API stays responsive;
    a failed report is logged and retried on the next round rather than stopping the lab."""
    last_tick = time.monotonic()
    # Reload and report at once on the first round, so the lab is online right away.
    last_report = last_reload = last_tick - max(report_every_seconds, reload_every_seconds)
    while True:
        now = time.monotonic()
        fleet.advance(now - last_tick)
        last_tick = now
        try:
            if now - last_reload >= reload_every_seconds:
                await asyncio.to_thread(fleet.reload)
                last_reload = now
            if now - last_report >= report_every_seconds:
                await asyncio.to_thread(fleet.report)
                last_report = now
        except Exception:
            # The database may be restarting; the simulated lab carries on and the next
            # round retries, instead of the simulator dying silently.
            log.exception("simulated devices could not reload or report; retrying")
        await asyncio.sleep(tick_seconds)
