"""Fabrication jobs and what the print monitor sees, on the write path.

A job moves ``preparing → printing → (paused ↔ printing) → completed|failed|aborted``.
``started_at`` marks the first time it prints (a resume after a pause keeps it) and
``completed_at`` the moment it reaches a final state. Monitor events need a confidence,
and failure events need a snapshot as evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    CADArtifact,
    Device,
    DeviceCommand,
    FabricationJob,
    PrintMonitorEvent,
)
from kittylab.domain.enums import DeviceKind, FabricationStatus, MonitorEventType
from kittylab.domain.errors import Conflict, NotFound, ValidationFailed
from kittylab.domain.records import validate_monitor_event
from kittylab.domain.sanitize import sanitize_text
from kittylab.domain.state_machines import FABRICATION_TRANSITIONS, is_final, transition
from kittylab.fabrication import job_details
from kittylab.fabrication.job_details import JobDetails

logger = logging.getLogger(__name__)

_KEY_MAX = 512  # the length of gcode_path and snapshot_key
_REASON_MAX = 2000


def create_fabrication_job(
    session: Session,
    *,
    device: Device,
    gcode_path: str,
    requested_by: UUID,
    cad_artifact_id: UUID | None = None,
    origin_command_id: UUID | None = None,
    details: JobDetails | None = None,
    now: datetime,
) -> FabricationJob:
    """Record a ``preparing`` job on ``device`` and return it, flushed.

    The device must be a printer (``ValidationFailed``, field ``device_id``) that is not
    retired (``Conflict``); ``gcode_path`` is the object key of the sliced file, 1-512
    characters. An unknown CAD artifact or originating command is ``NotFound``. ``details``
    holds job metadata such as hazardous-material flags (``fabrication.job_details``).
    """
    if device.retired_at is not None:
        raise Conflict(
            f"device {device.external_id} is retired and takes no jobs", field="deviceId"
        )
    if device.kind is not DeviceKind.PRINTER:
        raise ValidationFailed(
            "device_id", f"{device.external_id} is a {device.kind.value}, not a printer"
        )
    path = _clean_key(gcode_path, "gcode_path")
    if cad_artifact_id is not None and session.get(CADArtifact, cad_artifact_id) is None:
        raise NotFound("CAD artifact", cad_artifact_id)
    if origin_command_id is not None and session.get(DeviceCommand, origin_command_id) is None:
        raise NotFound("device command", origin_command_id)
    job = FabricationJob(
        device_id=device.id,
        gcode_path=path,
        requested_by=requested_by,
        cad_artifact_id=cad_artifact_id,
        origin_command_id=origin_command_id,
        status=FabricationStatus.PREPARING,
        details=job_details.new_details(details or JobDetails()),
        created_at=now,
    )
    session.add(job)
    session.flush()
    return job


def advance_fabrication_job(
    session: Session,
    job_id: UUID,
    target: FabricationStatus,
    *,
    now: datetime,
    reason: str | None = None,
) -> FabricationJob:
    """Move a job to ``target`` under a row lock and return it.

    Raises ``NotFound`` for an unknown id and ``InvalidTransition`` for a move the table
    forbids (anything out of a final state among them). The first move to ``printing``
    stamps ``started_at``; a final state stamps ``completed_at``. A given ``reason`` is
    stored, sanitized, as ``JobDetails.reason``.
    """
    job = session.get(FabricationJob, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise NotFound("fabrication job", job_id)
    previous = job.status
    job.status = transition("fabrication job", FABRICATION_TRANSITIONS, previous, target)
    if target is FabricationStatus.PRINTING and job.started_at is None:
        job.started_at = now
    if is_final(FABRICATION_TRANSITIONS, target):
        job.completed_at = now
    if reason is not None:
        details = job_details.read(job)
        job_details.write(job, replace(details, reason=sanitize_text(reason, _REASON_MAX)))
    session.flush()
    logger.info("fabrication job %s: %s -> %s", job.id, previous.value, target.value)
    return job


def record_monitor_event(
    session: Session,
    *,
    fabrication_job_id: UUID,
    event_type: MonitorEventType,
    confidence: float,
    snapshot_key: str | None,
    details: Mapping[str, Any] | None,
    now: datetime,
) -> PrintMonitorEvent:
    """Record what the monitor saw at ``now`` and return the flushed row.

    Raises ``NotFound`` for an unknown job and ``ValidationFailed`` for a missing or
    out-of-range confidence (``confidence``) or a failure event (spaghetti, nozzle clog)
    without a snapshot (``snapshot_key``). A blank snapshot key counts as none.
    """
    if session.get(FabricationJob, fabrication_job_id) is None:
        raise NotFound("fabrication job", fabrication_job_id)
    snapshot = (snapshot_key or "").strip() or None
    validate_monitor_event(event_type, confidence, snapshot)
    if snapshot is not None:
        snapshot = _clean_key(snapshot, "snapshot_key")
    event = PrintMonitorEvent(
        fabrication_job_id=fabrication_job_id,
        event_type=event_type,
        confidence=float(confidence),
        snapshot_key=snapshot,
        details=dict(details or {}),
        occurred_at=now,
    )
    session.add(event)
    session.flush()
    return event


def _clean_key(value: str, field: str) -> str:
    key = value.strip()
    if not key or len(key) > _KEY_MAX:
        raise ValidationFailed(field, f"must be 1-{_KEY_MAX} characters")
    return key
