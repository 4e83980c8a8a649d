"""Run the simulated devices of the lab: advance them in time and report their state as
telemetry (topic ``state``), which keeps them online and gives the API their live state.

Only ``kittylab serve`` runs a fleet (one per lab); worker processes do not, so a scaled-out
lab does not simulate the same printer twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.domain.enums import DeviceKind
from kittylab.services import telemetry

log = logging.getLogger(__name__)

SIMULATED = "simulated"
STATE_TOPIC = "state"


class Simulator(Protocol):
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
        """Store every device's state as one telemetry batch; returns how many."""
        if not self.devices:
            return 0
        now = self._clock()
        events = [
            telemetry.IncomingEvent(device_id, None, STATE_TOPIC, sim.snapshot(), now)
            for device_id, sim in self.devices.items()
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
