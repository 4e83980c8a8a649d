"""What print monitors report, and what KittyLab does about it.

A detector (Obico-compatible, telemetry rules, a person watching) reports a
PrintMonitorEvent on a job. A *failure* (spaghetti, a clogged nozzle — snapshot
mandatory) pauses the job at once through the normal command path and tells whoever
started it, with a link to the snapshot; a *warning* only tells them. ``first_layer_ok``
and ``completed`` are recorded.

The first notification says the pause was *requested* ("Pausing the print on …"): the
printer has not confirmed it yet. The pause is linked to the job
(``follow_ups.link``), so if it then fails — refused, unreachable, not confirmed in
time — the operator gets a second, urgent notification with the reason.

Pausing is a safe action: it is never held for approval, and a pause already on its way
(the same job, an earlier failure) is not sent twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.tables import Device, DeviceCommand, FabricationJob, PrintMonitorEvent
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import NotifySettings
from kittylab.devices.requests import request_command
from kittylab.domain.actuation import SystemActor
from kittylab.domain.enums import CommandStatus, FabricationStatus, MonitorEventType
from kittylab.domain.errors import KittyLabError, NotFound, ValidationFailed
from kittylab.fabrication import records as fabrication_records
from kittylab.monitoring import follow_ups
from kittylab.ports import JobQueue
from kittylab.records import alerts

log = logging.getLogger(__name__)


class Severity(StrEnum):
    FAILURE = "failure"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class MonitorOutcome:
    event: PrintMonitorEvent
    pause_command_id: UUID | None = None
    notification_ids: list[UUID] = field(default_factory=list)
    note: str | None = None
    """Why a failure did not pause the job, when it did not."""


def report(
    session: UnitOfWork,
    *,
    jobs: JobQueue,
    job_id: UUID,
    event_type: MonitorEventType,
    confidence: float,
    snapshot_key: str | None,
    severity: Severity | None,
    details: Mapping[str, Any] | None,
    notify: NotifySettings,
    now: datetime,
) -> MonitorOutcome:
    """Record the event and act on it (see the module doc); once ``session`` commits, the
    pause is dispatched and the notifications delivered (registered on it; a lost job is
    caught up by ``reconcile_commands`` and ``sweep_notifications``). ``severity``
    defaults to ``failure`` for failure types and ``info`` otherwise; a warning or failure
    on a benign type is refused (``ValidationFailed`` on ``severity``)."""
    level = severity or (Severity.FAILURE if event_type.is_failure else Severity.INFO)
    if level is not Severity.INFO and not event_type.is_failure:
        raise ValidationFailed("severity", f"a {event_type.value} event is not a fault")
    # Locked: the pause is linked in the job's details, which the tracker also writes.
    job = session.get(FabricationJob, job_id, with_for_update=True)
    if job is None:
        raise NotFound("fabrication job", job_id)
    event = fabrication_records.record_monitor_event(
        session,
        fabrication_job_id=job_id,
        event_type=event_type,
        confidence=confidence,
        snapshot_key=snapshot_key,
        details={**dict(details or {}), "severity": level.value},
        now=now,
    )
    if level is Severity.INFO:
        return MonitorOutcome(event)
    pause_id, note = None, None
    if level is Severity.FAILURE:
        pause_id, note = _pause(session, jobs, job, event, now)
    printer = session.get(Device, job.device_id)
    name = printer.display_name if printer else "the printer"
    what = event_type.value.replace("_", " ")
    title = (
        f"Pausing the print on {name}: {what}" if pause_id else f"Print on {name}: {what} ({level})"
    )
    body = f"{what} with confidence {confidence:.0%}."
    if event.snapshot_key:
        body += f" Snapshot: {follow_ups.snapshot_path(event.snapshot_key)}"
    if pause_id:
        body += (
            " A pause was requested; the printer has not confirmed it yet. If it does not"
            " pause, you will be told at once."
        )
    if note:
        body += f" Not paused: {note}."
    rows = alerts.notify_person(
        session,
        job.requested_by,
        title,
        body,
        notify,
        related_job_id=job_id,
        idempotency_key=f"monitor:{event.id}",
    )
    for row in rows:
        session.after_commit(jobs.defer_notification, row.id)
    return MonitorOutcome(event, pause_id, [r.id for r in rows], note)


def _pause(
    uow: UnitOfWork, jobs: JobQueue, job: FabricationJob, event: PrintMonitorEvent, now: datetime
) -> tuple[UUID | None, str | None]:
    if job.status is not FabricationStatus.PRINTING:
        return None, f"the job is {job.status.value}"
    waiting = uow.scalar(
        select(DeviceCommand.id).where(
            DeviceCommand.device_id == job.device_id,
            DeviceCommand.intent == "print_pause",
            DeviceCommand.status.in_([CommandStatus.PENDING, CommandStatus.SENT]),
        )
    )
    if waiting is not None:  # a pause is already on its way: join it
        event.details = {**event.details, "pause_command_id": str(waiting)}
        follow_ups.link(job, waiting, event.id, "print_pause")
        # A no-op when its job waits; sends it should that job have been lost.
        uow.after_commit(jobs.defer_dispatch, waiting)
        return waiting, None
    try:
        with uow.begin_nested():
            requested = request_command(
                uow,
                jobs=jobs,
                device_id=job.device_id,
                intent="print_pause",
                payload={},
                requester=SystemActor("print monitor pause", job.requested_by),
                now=now,
            )
    except KittyLabError as refusal:
        # The event and the notification are kept whatever stops the pause.
        log.warning("monitor could not pause job %s: %s", job.id, refusal)
        return None, str(refusal)
    command_id = requested.command.id
    event.details = {**event.details, "pause_command_id": str(command_id)}
    follow_ups.link(job, command_id, event.id, "print_pause")
    return command_id, None
