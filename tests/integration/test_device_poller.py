"""The poller reads devices that do not report themselves and records their state."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, TelemetryEvent, Zone
from kittylab.devices.poller import DevicePoller
from kittylab.devices.ports import DeviceTarget, DeviceUnavailable
from kittylab.domain.enums import DeviceKind, HazardLevel, OnlineState


class HubDriver:
    """A fake of the driver port: one lamp answers, one is unplugged."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def send(self, device: DeviceTarget, intent: str, payload: Any) -> None:
        raise AssertionError("the poller never sends")

    async def state(self, device: DeviceTarget) -> dict[str, Any]:
        self.asked.append(device.external_id)
        if device.external_id == "unplugged":
            raise DeviceUnavailable("unplugged: connection refused")
        return {"on": True, "brightness": 70}

    async def close(self) -> None:
        return None


def test_polled_devices_report_state_and_come_online_and_self_reporting_ones_are_skipped(
    container: bootstrap.Container, database: Database
) -> None:
    with database.unit_of_work() as s:
        zone = Zone(name="shop", hazard_level=HazardLevel.LOW)
        s.add(zone)
        s.flush()
        for ext, integration in [("lamp", "hub"), ("unplugged", "hub"), ("sim", "simulated")]:
            s.add(
                Device(
                    external_id=ext,
                    integration=integration,
                    display_name=ext,
                    kind=DeviceKind.LIGHT,
                    zone_id=zone.id,
                )
            )
    hub = HubDriver()
    poller = DevicePoller(database, {"hub": hub, "simulated": hub}, container.clock)

    assert asyncio.run(poller.round()) == 1

    assert sorted(hub.asked) == ["lamp", "unplugged"]
    with database.unit_of_work() as s:
        states = {d.external_id: d.online_state for d in s.scalars(select(Device))}
        stored = s.scalars(select(TelemetryEvent)).all()
    assert states == {
        "lamp": OnlineState.ONLINE,
        "unplugged": OnlineState.OFFLINE,
        "sim": OnlineState.OFFLINE,
    }
    assert [(e.topic, e.payload) for e in stored] == [("state", {"on": True, "brightness": 70})]
