"""What a print monitor's alert sends to the printer, and what happens when it fails.

A failure alert (``reports.report``) asks for a pause, and a thermal runaway also
for a cooldown (``watcher``). The first notification can only say the pause was
*requested*: the printer has not confirmed anything yet. So each such command is linked
to its job (``JobDetails.monitor_commands``: command id → the monitor event and intent),
and ``dispatch`` calls ``alert_if_failed`` inside the transaction that decides the
command. A linked command that ends ``failed`` (refused, broker down, not confirmed in
time) records a second, urgent notification naming the failure reason. Deciding the
command and recording that notification commit together, so neither a crash nor a
watcher that already marked the condition as seen can lose the alert.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, DeviceCommand, FabricationJob, PrintMonitorEvent
from kittylab.config import NotifySettings
from kittylab.domain.enums import CommandStatus
from kittylab.fabrication import job_details
from kittylab.fabrication.job_details import MonitorLink
from kittylab.records import alerts

log = logging.getLogger(__name__)

FOLLOW_UP_INTENTS = frozenset({"print_pause", "printer_cooldown"})
_WHAT_FAILED = {"print_pause": "paused", "printer_cooldown": "cooled down"}


def snapshot_path(key: str) -> str:
    """Where the API serves the snapshot stored under ``key``
    (``snapshots/<job>/<name>`` → ``GET /api/fabrication/jobs/<job>/snapshots/<name>``);
    the key itself for anything else, so a notification always names the evidence."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "snapshots":
        return key
    return f"/api/fabrication/jobs/{parts[1]}/snapshots/{parts[2]}"


def link(job: FabricationJob, command_id: UUID, event_id: UUID, intent: str) -> None:
    """Remember that ``command_id`` was sent for the monitor event ``event_id``. A command
    already linked (a second failure joining a pause on its way) keeps its first event."""
    details = job_details.read(job)
    if command_id in details.monitor_commands:
        return
    links = {**details.monitor_commands, command_id: MonitorLink(event_id, intent)}
    job_details.write(job, replace(details, monitor_commands=links))


def alert_if_failed(session: Session, command: DeviceCommand, notify: NotifySettings) -> list[UUID]:
    """When ``command`` just failed and a monitor alert sent it, record the urgent
    notification (idempotent per command) and return its rows' ids for delivery after
    the caller commits; otherwise nothing."""
    if command.status is not CommandStatus.FAILED or command.intent not in FOLLOW_UP_INTENTS:
        return []
    job = session.scalar(
        select(FabricationJob)
        .where(
            FabricationJob.device_id == command.device_id,
            job_details.links_command(command.id),
        )
        .limit(1)
    )
    if job is None:
        return []  # sent by a person, not by an alert: they follow their own command
    entry = job_details.read(job).monitor_commands.get(command.id)
    event = session.get(PrintMonitorEvent, entry.event_id) if entry is not None else None
    printer = session.get(Device, job.device_id)
    name = printer.display_name if printer else "the printer"
    what = event.event_type.value.replace("_", " ") if event else "a failure"
    condition = (event.details.get("condition") if event else None) or what
    title = f"URGENT: the print on {name} was NOT {_WHAT_FAILED[command.intent]}"
    body = (
        f"{str(condition).replace('_', ' ')} was reported on this print and KittyLab asked "
        f"the printer to {command.intent.replace('_', ' ')}, but that failed: "
        f"{command.failure_reason or 'no reason was given'}. The printer may still be "
        "running: stop it by hand."
    )
    if event is not None and event.snapshot_key:
        body += f" Snapshot: {snapshot_path(event.snapshot_key)}"
    log.warning("monitor %s for job %s failed: %s", command.intent, job.id, command.failure_reason)
    rows = alerts.notify_person(
        session,
        job.requested_by,
        title,
        body,
        notify,
        related_job_id=job.id,
        idempotency_key=f"monitor-command-failed:{command.id}",
    )
    return [row.id for row in rows]
