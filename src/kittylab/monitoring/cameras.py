"""The lab's declared cameras, read from the devices table: the one camera watching a
printer or a zone, and the origins snapshot URLs may be fetched from
(``domain.camera_hosts``).

A camera's snapshot URL is its ``connection.snapshot_url``. A simulated camera that
declares none is served by the simulator process on loopback (issue 14): given
``simulated`` (``simulator.camera_base_url``), its URL is the simulator's
(``domain.simulated_lab.camera_snapshot_url``), and it counts as declared like any other."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device
from kittylab.devices.ports import expand_connection
from kittylab.domain.camera_hosts import Origin, declared_origins
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import KittyLabError
from kittylab.domain.simulated_lab import SIMULATED, camera_snapshot_url


def snapshot_urls(
    session: Session, zone_id: UUID | None = None, *, simulated: str | None = None
) -> list[tuple[str, str]]:
    """``(external id, snapshot URL)`` of every active camera (of ``zone_id``) that
    declares a ``snapshot_url`` in its connection, ``${ENV}`` references expanded, and of
    the simulated ones served by the simulator at ``simulated``; a camera whose URL cannot
    be expanded is left out."""
    stmt = select(Device).where(Device.kind == DeviceKind.CAMERA, Device.retired_at.is_(None))
    if zone_id is not None:
        stmt = stmt.where(Device.zone_id == zone_id)
    found: list[tuple[str, str]] = []
    for camera in session.scalars(stmt.order_by(Device.external_id)):
        raw = camera.connection.get("snapshot_url")
        if not isinstance(raw, str):
            if simulated is not None and camera.integration == SIMULATED:
                found.append(
                    (camera.external_id, camera_snapshot_url(simulated, camera.external_id))
                )
            continue
        try:
            url = expand_connection({"snapshot_url": raw})["snapshot_url"]
        except KittyLabError:
            continue
        found.append((camera.external_id, str(url)))
    return found


def zone_camera_url(
    session: Session, zone_id: UUID, preferred: object = None, *, simulated: str | None = None
) -> str | None:
    """The snapshot URL of the zone's camera: the one named ``preferred`` (an external id,
    e.g. a printer's ``attributes.camera``) when it has one, else the first by name."""
    cameras = snapshot_urls(session, zone_id, simulated=simulated)
    cameras.sort(key=lambda c: c[0] != preferred)
    return cameras[0][1] if cameras else None


def lab_camera_origins(session: Session, *, simulated: str | None = None) -> frozenset[Origin]:
    return declared_origins(url for _, url in snapshot_urls(session, simulated=simulated))
