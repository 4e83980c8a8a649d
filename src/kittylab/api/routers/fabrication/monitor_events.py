"""``/api/fabrication/monitor-events`` and ``/api/fabrication/jobs/{id}/monitor-events``:
what print monitors saw — reporting it on a job (a failure pauses the print), and the
events' list."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy import select

from kittylab.adapters.db.tables import PrintMonitorEvent
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.routers.fabrication.callers import MonitorCaller, artifact_store
from kittylab.api.schemas import MonitorEventIn, MonitorEventOut, MonitorReportOut
from kittylab.bootstrap import Container
from kittylab.domain.enums import MonitorEventType
from kittylab.domain.errors import ValidationFailed
from kittylab.monitoring import reports

router = APIRouter(prefix="/api/fabrication", tags=["fabrication"])


@router.post(
    "/jobs/{job_id}/monitor-events",
    response_model=MonitorReportOut,
    status_code=status.HTTP_201_CREATED,
)
def report_monitor_event(
    job_id: UUID,
    body: MonitorEventIn,
    _: MonitorCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> MonitorReportOut:
    """What a print monitor saw. A failure (``spaghetti_detected``, ``nozzle_clog``;
    ``snapshotKey`` required) pauses a printing job at once and tells whoever started it;
    ``severity: warning`` only tells them (the pause is dispatched and the notices
    delivered once the report commits)."""
    if body.snapshot_key is not None and not body.snapshot_key.startswith(f"snapshots/{job_id}/"):
        raise ValidationFailed("snapshotKey", "must be a snapshot uploaded for this job")
    if body.snapshot_key is not None and not artifact_store(c).exists(body.snapshot_key):
        raise ValidationFailed("snapshotKey", "no snapshot is stored under this key")
    try:
        outcome = reports.report(
            uow,
            jobs=c.jobs,
            job_id=job_id,
            event_type=body.event_type,
            confidence=body.confidence,
            snapshot_key=body.snapshot_key,
            severity=reports.Severity(body.severity) if body.severity else None,
            details=body.details,
            notify=c.settings.notify,
            now=c.clock(),
        )
    except ValidationFailed as refused:
        if refused.field != "snapshot_key":
            raise
        # The record rules speak of the column; the client sent the API's field.
        raise ValidationFailed("snapshotKey", refused.message) from None
    return MonitorReportOut(
        event_id=outcome.event.id,
        pause_command_id=outcome.pause_command_id,
        notified=len(outcome.notification_ids),
        note=outcome.note,
    )


@router.get("/monitor-events", response_model=Page[MonitorEventOut])
def list_monitor_events(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    fabrication_job_id: Annotated[UUID | None, Query(alias="fabricationJobId")] = None,
    event_type: Annotated[MonitorEventType | None, Query(alias="eventType")] = None,
) -> Page[MonitorEventOut]:
    stmt = where_equal(
        select(PrintMonitorEvent),
        (PrintMonitorEvent.fabrication_job_id, fabrication_job_id),
        (PrintMonitorEvent.event_type, event_type),
    )
    return paginate(uow, stmt, PrintMonitorEvent.id, cursor, limit, MonitorEventOut.model_validate)
