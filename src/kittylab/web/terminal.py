"""What a wall terminal shows (issue 18): its one zone, as the floor shows it, with the
zone's pending approvals and its recent alerts. Reads only; the terminal's router
(``api/routers/console_terminal.py``) decides who may see it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    Device,
    FabricationJob,
    PrintMonitorEvent,
    SafetyEvent,
    User,
)
from kittylab.domain.enums import MonitorEventType, OnlineState, SafetyStatus
from kittylab.safety import event_details
from kittylab.web.floor import ZoneView, read_floor

ALERTS_WINDOW = timedelta(hours=2)
"""How far back the terminal's alerts go: what happened in the room this session."""
ALERTS_SHOWN = 6

MONITOR_WORDS = {
    MonitorEventType.SPAGHETTI_DETECTED: "Print failure (spaghetti)",
    MonitorEventType.NOZZLE_CLOG: "Nozzle clog",
    MonitorEventType.FIRST_LAYER_OK: "First layer fine",
    MonitorEventType.COMPLETED: "Print finished",
}


@dataclass(frozen=True)
class PendingApproval:
    id: UUID
    what: str
    requested_by: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class Alert:
    at: datetime | None
    title: str
    detail: str
    severe: bool


@dataclass(frozen=True)
class Panel:
    approvals: list[PendingApproval]
    alerts: list[Alert]


def read_zone(
    session: Session,
    zone_id: UUID,
    now: datetime,
    presence_ttl: timedelta,
    *,
    simulated_cameras: str | None,
) -> ZoneView | None:
    """The terminal's zone with its devices and who is there (None: the zone is gone)."""
    zones = read_floor(
        session, now, presence_ttl, simulated_cameras=simulated_cameras, zone_id=zone_id
    )
    return zones[0] if zones else None


def read_panel(session: Session, zone_id: UUID, now: datetime) -> Panel:
    return Panel(pending_approvals(session, zone_id, now), alerts(session, zone_id, now))


def pending_approvals(session: Session, zone_id: UUID, now: datetime) -> list[PendingApproval]:
    """The zone's safety events waiting for approval (its devices' or its own), oldest
    first: what someone in the room may be waiting on."""
    names = {u: n for u, n in session.execute(select(User.id, User.display_name))}
    rows = session.execute(
        select(SafetyEvent, Device.display_name)
        .outerjoin(Device, Device.id == SafetyEvent.device_id)
        .where(
            SafetyEvent.status == SafetyStatus.PENDING,
            or_(SafetyEvent.zone_id == zone_id, Device.zone_id == zone_id),
            or_(SafetyEvent.expires_at.is_(None), SafetyEvent.expires_at > now),
        )
        .order_by(SafetyEvent.created_at)
        .limit(20)
    ).all()
    found = []
    for event, device_name in rows:
        intent = event_details.read(event).intent
        what = " on ".join(part for part in (intent, device_name) if part) or (
            event.event_type.value.replace("_", " ")
        )
        found.append(
            PendingApproval(
                event.id,
                what.replace("_", " "),
                names.get(event.initiated_by, "?"),
                event.created_at,
                event.expires_at,
            )
        )
    return found


def alerts(session: Session, zone_id: UUID, now: datetime) -> list[Alert]:
    """The zone's devices in fault, then its print monitor's failure events of the last
    ``ALERTS_WINDOW``, newest first."""
    found = [
        Alert(None, f"{name}: fault", "the device reports a fault", True)
        for name in session.scalars(
            select(Device.display_name).where(
                Device.zone_id == zone_id,
                Device.retired_at.is_(None),
                Device.online_state == OnlineState.FAULT,
            )
        )
    ]
    events = session.execute(
        select(PrintMonitorEvent, Device.display_name)
        .join(FabricationJob, FabricationJob.id == PrintMonitorEvent.fabrication_job_id)
        .join(Device, Device.id == FabricationJob.device_id)
        .where(
            Device.zone_id == zone_id,
            PrintMonitorEvent.occurred_at > now - ALERTS_WINDOW,
            PrintMonitorEvent.event_type.in_([t for t in MonitorEventType if t.is_failure]),
        )
        .order_by(PrintMonitorEvent.occurred_at.desc())
        .limit(ALERTS_SHOWN)
    ).all()
    found.extend(
        Alert(
            event.occurred_at,
            f"{MONITOR_WORDS[event.event_type]} on {printer}",
            f"confidence {event.confidence:.0%}",
            True,
        )
        for event, printer in events
    )
    return found[:ALERTS_SHOWN]
