"""Reading the lab's stored state for an answer, through the turn's unit of work: devices
with their newest reported state, locks, presence, print jobs, approvals, snapshots. Every
function reads; none writes."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    Device,
    FabricationJob,
    PrintMonitorEvent,
    SafetyApproval,
    SafetyEvent,
    User,
    Zone,
)
from kittylab.conversation.answers.facts import (
    ApprovalFact,
    DeviceFact,
    JobFact,
    LockHeld,
    Presence,
    SnapshotFact,
)
from kittylab.conversation.answers.questions import Person
from kittylab.devices.telemetry import latest_state
from kittylab.domain.enums import FabricationStatus, OnlineState, SafetyStatus
from kittylab.domain.principal import Principal
from kittylab.domain.print_queue import FINISHED
from kittylab.fabrication import job_details
from kittylab.people import presence as presence_records
from kittylab.safety import event_details, workflow
from kittylab.safety.locks import list_locks

POLLED_INTEGRATIONS = frozenset({"octoprint", "moonraker", "homeassistant", "bambu"})


@dataclass(frozen=True)
class ReportIntervals:
    """How often devices report, by how they are connected: a device's own
    ``attributes.report_interval_seconds`` first, then its integration's."""

    simulated: float
    polled: float
    other: float

    def of(self, integration: str, attributes: dict[str, Any]) -> float:
        own = attributes.get("report_interval_seconds")
        if isinstance(own, int | float) and not isinstance(own, bool) and own > 0:
            return float(own)
        if integration == "simulated":
            return self.simulated
        if integration in POLLED_INTEGRATIONS:
            return self.polled
        return self.other


def device_facts(
    session: Session, external_ids: Sequence[str], intervals: ReportIntervals
) -> list[DeviceFact]:
    """The active devices named, in the order given, each with its newest state."""
    if not external_ids:
        return []
    rows = session.execute(
        select(Device, Zone.name)
        .join(Zone, Zone.id == Device.zone_id)
        .where(Device.external_id.in_(list(external_ids)), Device.retired_at.is_(None))
    ).all()
    by_id = {device.external_id: (device, zone) for device, zone in rows}
    facts = []
    for external_id in external_ids:
        found = by_id.get(external_id)
        if found is None:
            continue
        device, zone = found
        event = latest_state(session, device.id)
        state = event.payload if event is not None and isinstance(event.payload, dict) else None
        facts.append(
            DeviceFact(
                id=device.id,
                external_id=device.external_id,
                display_name=device.display_name,
                kind=device.kind.value,
                zone=zone,
                online=device.online_state is OnlineState.ONLINE,
                state=state,
                reported_at=event.recorded_at if event is not None else None,
                interval_seconds=intervals.of(device.integration, device.attributes),
                capabilities=frozenset(device.capabilities),
                note=None,
            )
        )
    return facts


def device_attributes(session: Session, external_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    rows = session.execute(
        select(Device.external_id, Device.attributes).where(
            Device.external_id.in_(list(external_ids)), Device.retired_at.is_(None)
        )
    ).all()
    return {external_id: dict(attributes) for external_id, attributes in rows}


def people(session: Session) -> list[Person]:
    return [
        Person(u.id, u.username, u.display_name)
        for u in session.scalars(select(User).where(User.active.is_(True)).order_by(User.username))
    ]


def held_locks(
    session: Session,
    *,
    device_external_ids: Collection[str] = (),
    zone: str | None = None,
    owner_id: UUID | None = None,
) -> list[LockHeld]:
    locks = list_locks(session, active=True, owner_id=owner_id)
    if not locks:
        return []
    devices = {
        d.id: (d, z)
        for d, z in session.execute(
            select(Device, Zone.name)
            .join(Zone, Zone.id == Device.zone_id)
            .where(Device.id.in_({lock.device_id for lock in locks}))
        ).all()
    }
    owners = {
        u.id: u.display_name
        for u in session.scalars(select(User).where(User.id.in_({lock.owner_id for lock in locks})))
    }
    out = []
    for lock in sorted(locks, key=lambda lock: (lock.placed_at, lock.id)):
        device, zone_name = devices[lock.device_id]
        if device_external_ids and device.external_id not in device_external_ids:
            continue
        if zone is not None and zone_name != zone:
            continue
        out.append(
            LockHeld(
                device_name=device.display_name,
                device_external_id=device.external_id,
                zone=zone_name,
                owner_id=lock.owner_id,
                owner_name=owners.get(lock.owner_id, "someone"),
                reason=lock.reason,
                placed_at=lock.placed_at,
            )
        )
    return out


def presence(session: Session, zone: str | None, now: datetime, ttl: timedelta) -> list[Presence]:
    """Who is present now in ``zone`` (None: every zone), by the presence records."""
    stmt = select(Zone).order_by(Zone.name)
    if zone is not None:
        stmt = stmt.where(Zone.name == zone)
    zones = list(session.scalars(stmt))
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    return [
        Presence(
            z.name,
            tuple(
                sorted(
                    names.get(u, "someone")
                    for u in presence_records.occupancy(session, z.id, now, ttl).present
                )
            ),
        )
        for z in zones
    ]


def _job_fact(job: FabricationJob, printer: Device, owner: str) -> JobFact:
    details = job_details.read(job)
    file = details.source_name or PurePosixPath(job.gcode_path).name
    return JobFact(
        id=job.id,
        printer=printer.display_name,
        printer_external_id=printer.external_id,
        file=file,
        status=job.status.value,
        stage=details.stage,
        owner_id=job.requested_by,
        owner_name=owner,
        created_at=job.created_at,
        completed_at=job.completed_at,
        reason=details.reason,
    )


def _jobs(
    session: Session,
    statuses: Collection[FabricationStatus],
    printers: Collection[str],
    zone: str | None,
    owner_id: UUID | None,
    newest_first: bool,
    limit: int,
) -> list[JobFact]:
    stmt = (
        select(FabricationJob, Device, User.display_name)
        .join(Device, Device.id == FabricationJob.device_id)
        .join(Zone, Zone.id == Device.zone_id)
        .join(User, User.id == FabricationJob.requested_by)
        .where(FabricationJob.status.in_(list(statuses)))
    )
    if printers:
        stmt = stmt.where(Device.external_id.in_(list(printers)))
    if zone is not None:
        stmt = stmt.where(Zone.name == zone)
    if owner_id is not None:
        stmt = stmt.where(FabricationJob.requested_by == owner_id)
    if newest_first:
        stmt = stmt.order_by(
            FabricationJob.completed_at.desc().nulls_last(), FabricationJob.created_at.desc()
        )
    else:
        stmt = stmt.order_by(FabricationJob.created_at, FabricationJob.id)
    return [_job_fact(j, d, owner) for j, d, owner in session.execute(stmt.limit(limit)).all()]


def queued_jobs(
    session: Session,
    *,
    printers: Collection[str] = (),
    zone: str | None = None,
    owner_id: UUID | None = None,
    limit: int = 20,
) -> list[JobFact]:
    """Jobs on their way to a printer (preparing: slicing, queued, starting), oldest first."""
    return _jobs(session, [FabricationStatus.PREPARING], printers, zone, owner_id, False, limit)


def last_finished_job(
    session: Session,
    *,
    printers: Collection[str] = (),
    zone: str | None = None,
    owner_id: UUID | None = None,
) -> JobFact | None:
    found = _jobs(session, FINISHED, printers, zone, owner_id, True, 1)
    return found[0] if found else None


def pending_approvals(
    session: Session,
    caller: Principal,
    *,
    zone: str | None,
    device_external_ids: Collection[str],
    now: datetime,
) -> list[ApprovalFact]:
    """Pending safety events (not expired), each marked whether the asker may approve it:
    one of its required roles, not its initiator, not approved by them yet."""
    stmt = (
        select(SafetyEvent)
        .where(SafetyEvent.status == SafetyStatus.PENDING)
        .where((SafetyEvent.expires_at.is_(None)) | (SafetyEvent.expires_at > now))
        .order_by(SafetyEvent.created_at)
        .limit(50)
    )
    events = list(session.scalars(stmt))
    if not events:
        return []
    devices = {
        d.id: d
        for d in session.scalars(
            select(Device).where(Device.id.in_({e.device_id for e in events if e.device_id}))
        )
    }
    zones = {z.id: z.name for z in session.scalars(select(Zone))}
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    given: dict[UUID, set[UUID]] = {}
    for event_id, approver in session.execute(
        select(SafetyApproval.event_id, SafetyApproval.approver_id).where(
            SafetyApproval.event_id.in_([e.id for e in events])
        )
    ).all():
        given.setdefault(event_id, set()).add(approver)
    out = []
    for event in events:
        device = devices.get(event.device_id) if event.device_id else None
        zone_name = zones.get(event.zone_id) if event.zone_id else None
        if zone_name is None and device is not None:
            zone_name = zones.get(device.zone_id)
        if zone is not None and zone_name != zone:
            continue
        if device_external_ids and (
            device is None or device.external_id not in device_external_ids
        ):
            continue
        requirements = workflow.requirements_of(event)
        approvers = given.get(event.id, set())
        mine = (
            bool(caller.roles & requirements.roles)
            and event.initiated_by != caller.user_id
            and caller.user_id not in approvers
            and not caller.remote
        )
        intent = event_details.read(event).intent
        out.append(
            ApprovalFact(
                event_id=event.id,
                intent=intent if intent is not None else event.event_type.value,
                device_name=device.display_name if device is not None else None,
                zone=zone_name,
                initiator_name=names.get(event.initiated_by, "someone"),
                created_at=event.created_at,
                expires_at=event.expires_at,
                approvals=len(approvers),
                needed=requirements.approvals,
                mine_to_give=mine,
            )
        )
    return out


_SNAPSHOT_KEY = re.compile(r"snapshots/([0-9a-f-]{36})/([A-Za-z0-9][A-Za-z0-9._-]*\.(?:jpe?g|png))")


def latest_snapshot(session: Session, camera: DeviceFact) -> SnapshotFact | None:
    """The newest snapshot there is to show for ``camera``: the URL the camera itself
    reports, else the newest print-monitoring snapshot kept for a printer of its zone (as
    its API link). None when there is neither: nothing is made up."""
    url = (camera.state or {}).get("last_snapshot_url")
    if isinstance(url, str) and url:
        return SnapshotFact(url, camera.reported_at, "from the camera")
    rows = session.execute(
        select(PrintMonitorEvent.snapshot_key, PrintMonitorEvent.occurred_at)
        .join(FabricationJob, FabricationJob.id == PrintMonitorEvent.fabrication_job_id)
        .join(Device, Device.id == FabricationJob.device_id)
        .join(Zone, Zone.id == Device.zone_id)
        .where(Zone.name == camera.zone, PrintMonitorEvent.snapshot_key.is_not(None))
        .order_by(PrintMonitorEvent.occurred_at.desc())
        .limit(5)
    ).all()
    for key, at in rows:
        match = _SNAPSHOT_KEY.fullmatch(str(key))
        if match is not None:
            link = f"/api/fabrication/jobs/{match.group(1)}/snapshots/{match.group(2)}"
            return SnapshotFact(link, at, "print monitoring")
    return None
