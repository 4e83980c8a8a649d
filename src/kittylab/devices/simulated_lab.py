"""Telling the demo lab's simulator which devices to simulate (issue 14).

The simulator runs as its own process with no database access, a device like any other on
the bus. ``kittylab serve`` reads the lab's active devices of the ``simulated`` integration
(``read``) and publishes them, retained, on ``kitty/simulator/devices`` (``publish``;
the format is ``domain.simulated_lab``) at start, whenever any process changes the lab,
and every ``simulator.reload_interval_seconds`` (so a broker that lost its retained
messages gets it again). The simulator's bus identity is made to act for exactly these
devices first (``bootstrap.follow_simulated_devices``), so the states it then publishes
for new devices are admitted.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, Zone
from kittylab.domain import topics
from kittylab.domain.enums import DeviceKind
from kittylab.domain.simulated_lab import SIMULATED as SIMULATED
from kittylab.domain.simulated_lab import SimulatedDeviceSpec, encode
from kittylab.ports import MessageBus


def read(session: Session) -> list[SimulatedDeviceSpec]:
    """The lab's active simulated devices, by external id."""
    rows = session.execute(
        select(
            Device.external_id,
            Device.kind,
            Device.display_name,
            Device.capabilities,
            Device.attributes,
            Zone.name,
        )
        .join(Zone, Zone.id == Device.zone_id)
        .where(Device.integration == SIMULATED, Device.retired_at.is_(None))
        .order_by(Device.external_id)
    ).all()
    return [
        SimulatedDeviceSpec(
            external_id=row.external_id,
            kind=row.kind,
            zone=row.name,
            name=row.display_name,
            capabilities=dict(row.capabilities or {}),
            measures=_measures(row.kind, row.attributes or {}),
        )
        for row in rows
    ]


def _measures(kind: DeviceKind, attributes: dict[str, object]) -> tuple[str, ...]:
    measures = attributes.get("measures")
    if kind is not DeviceKind.SENSOR or not isinstance(measures, list):
        return ()
    return tuple(str(m) for m in measures)


def publish(bus: MessageBus, devices: list[SimulatedDeviceSpec]) -> None:
    """Publish ``devices``, retained: the simulator follows the newest message."""
    bus.publish(topics.SIMULATED_DEVICES, encode(devices), retain=True)
