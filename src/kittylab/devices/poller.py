"""The single poller of devices whose integrations are asked rather than told.

OctoPrint, Moonraker, Home Assistant and Bambu drivers answer ``state()`` when asked;
nothing pushes their state into KittyLab's records. The poller asks each active device of
those integrations every ``interval`` seconds (one at a time per integration, so a slow
hub is never hammered) and stores the answer as the device's ``state`` telemetry — which
keeps it online, feeds ``GET /api/devices/{id}/state`` and the commands' preconditions.
A device that cannot be read is simply not reported: it goes offline after
``devices.offline_after_seconds`` of silence like any other.

Integrations whose devices report themselves (``simulated``, ``mqtt``) are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device
from kittylab.devices import dispatch, telemetry
from kittylab.devices.ports import DeviceDriver, DeviceTarget
from kittylab.domain.errors import KittyLabError

log = logging.getLogger(__name__)

SELF_REPORTING = telemetry.SELF_REPORTING


class DevicePoller:
    def __init__(
        self,
        database: Database,
        drivers: Mapping[str, DeviceDriver],
        clock: Callable[[], datetime],
        *,
        interval_seconds: float = 5.0,
        skip: Collection[str] = SELF_REPORTING,
    ) -> None:
        self._database = database
        self._drivers = drivers
        self._clock = clock
        self._interval = interval_seconds
        self._skip = frozenset(skip)

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:
                log.exception("device poll round failed; retrying")
            await asyncio.sleep(self._interval)

    async def round(self) -> int:
        """Poll every polled device once; returns how many reported."""
        targets = await asyncio.to_thread(self._targets)
        by_integration: dict[str, list[DeviceTarget]] = {}
        for target in targets:
            by_integration.setdefault(target.integration, []).append(target)
        results = await asyncio.gather(
            *(self._poll(name, group) for name, group in by_integration.items())
        )
        events = [event for group in results for event in group]
        if not events:
            return 0
        return await asyncio.to_thread(self._store, events)

    def _targets(self) -> list[DeviceTarget]:
        with self._database.unit_of_work() as session:
            rows = session.scalars(
                select(Device).where(
                    Device.retired_at.is_(None), Device.integration.in_(list(self._drivers))
                )
            )
            return [dispatch.target_of(d) for d in rows if d.integration not in self._skip]

    async def _poll(
        self, integration: str, targets: list[DeviceTarget]
    ) -> list[telemetry.IncomingEvent]:
        driver = self._drivers[integration]
        events = []
        for target in targets:
            try:
                state = await driver.state(target)
            except KittyLabError as exc:
                log.info("%s (%s) could not be read: %s", target.external_id, integration, exc)
                continue
            events.append(
                telemetry.IncomingEvent(target.id, None, telemetry.STATE_TOPIC, state, None)
            )
        return events

    def _store(self, events: list[telemetry.IncomingEvent]) -> int:
        with self._database.unit_of_work() as session:
            return telemetry.store_stream(session, events, self._clock()).stored
