"""Camera bookmarks: the zone's camera image at the moment a held hazardous command is sent.

Once ``devices.dispatch`` has sent a command that waited for a signed approval, the
dispatch task defers ``bookmark`` (``JobQueue`` task ``bookmark_safety_event``): it fetches a
snapshot from the camera of the device's zone (the device's ``attributes.camera`` if it
names one, else the zone's first camera with a ``snapshot_url``: ``monitoring.cameras``),
keeps it in the artifact store under ``safety/<eventId>/…`` and writes its key to the
safety event's ``evidence_key`` and to an audit entry (``safety.evidence``). A snapshot
that cannot be had (no camera declared, the camera away, the store full) is recorded with
its reason (``safety.evidence_unavailable``, and ``details.evidence_unavailable`` on the
event), never raised: the command is already sent, and the bookmark never held it up.
Running again for an event that has its evidence does nothing (a retried job).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, SafetyEvent
from kittylab.domain.errors import KittyLabError
from kittylab.monitoring import cameras
from kittylab.monitoring.ports import SnapshotSource
from kittylab.records import audit
from kittylab.records.ports import ArtifactStore
from kittylab.safety import event_details


@dataclass(frozen=True)
class Bookmark:
    evidence_key: str | None
    unavailable: str | None = None
    """Why there is no snapshot."""


async def bookmark(
    database: Database,
    store: ArtifactStore | None,
    snapshots: SnapshotSource | None,
    event_id: UUID,
    clock: Callable[[], datetime],
    *,
    simulated_cameras: str | None = None,
) -> Bookmark | None:
    """Keep the zone camera's snapshot as the evidence of ``event_id`` (see the module doc);
    ``None`` when there is nothing to do (no such event, or it has its evidence).
    ``simulated_cameras``: where the simulator serves its cameras (``monitoring.cameras``)."""
    found = await asyncio.to_thread(_camera_of, database, event_id, simulated_cameras)
    if found is None:
        return None
    url = found or None
    key: str | None = None
    reason: str | None = None
    if store is None or snapshots is None:
        reason = "this process keeps no artifacts or fetches no snapshots"
    elif url is None:
        reason = "no camera with a snapshot_url is declared in the device's zone"
    else:
        try:
            snapshot = await snapshots.fetch(url)
            suffix = "png" if "png" in snapshot.content_type else "jpg"
            key = f"safety/{event_id}/{clock():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}.{suffix}"
            await asyncio.to_thread(
                store.put_bytes, key, snapshot.data, content_type=snapshot.content_type
            )
        except KittyLabError as exc:
            key, reason = None, str(exc)
    return await asyncio.to_thread(_record, database, event_id, key, reason, clock())


def _camera_of(database: Database, event_id: UUID, simulated: str | None) -> str | None:
    """The snapshot URL of the camera watching the event's device, ``""`` for none; None
    when the event is unknown or already has its evidence."""
    with database.unit_of_work() as session:
        event = session.get(SafetyEvent, event_id)
        if event is None or event.evidence_key is not None:
            return None
        device = session.get(Device, event.device_id) if event.device_id else None
        zone_id = event.zone_id or (device.zone_id if device is not None else None)
        if zone_id is None:
            return ""
        preferred = device.attributes.get("camera") if device is not None else None
        return cameras.zone_camera_url(session, zone_id, preferred, simulated=simulated) or ""


def _record(
    database: Database, event_id: UUID, key: str | None, reason: str | None, now: datetime
) -> Bookmark | None:
    with database.unit_of_work() as session:
        event = session.get(SafetyEvent, event_id, with_for_update=True)
        if event is None or event.evidence_key is not None:
            return None
        details: dict[str, str | None]
        if key is not None:
            event.evidence_key = key
            details = {"evidence_key": key}
        else:
            stored = event_details.read(event)
            event_details.write(event, replace(stored, evidence_unavailable=reason))
            details = {"evidence_unavailable": reason}
        audit.append(
            session,
            action="safety.evidence" if key is not None else "safety.evidence_unavailable",
            actor_id=None,
            now=now,
            subject_type="safety_event",
            subject_id=event_id,
            details={**details, "intent": event_details.read(event).intent},
        )
        return Bookmark(key, reason)
