"""Fabrication jobs and their print-monitor events (read side; the fabrication and
monitoring use cases create them)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy import select

from kittylab.adapters.db.tables import FabricationJob, PrintMonitorEvent
from kittylab.api.auth import Caller, UnitOfWork
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import FabricationJobOut, MonitorEventOut
from kittylab.domain.enums import FabricationStatus, MonitorEventType

router = APIRouter(prefix="/api", tags=["fabrication"])


@router.get("/fabrication/jobs", response_model=Page[FabricationJobOut])
def list_fabrication_jobs(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    device_id: Annotated[UUID | None, Query(alias="deviceId")] = None,
    status: FabricationStatus | None = None,
) -> Page[FabricationJobOut]:
    stmt = where_equal(
        select(FabricationJob),
        (FabricationJob.device_id, device_id),
        (FabricationJob.status, status),
    )
    return paginate(uow, stmt, FabricationJob.id, cursor, limit, FabricationJobOut.model_validate)


@router.get("/fabrication/jobs/{job_id}", response_model=FabricationJobOut)
def get_fabrication_job(job_id: UUID, _: Caller, uow: UnitOfWork) -> FabricationJob:
    return get_or_404(uow, FabricationJob, job_id, "fabrication job")


@router.get("/fabrication/monitor-events", response_model=Page[MonitorEventOut])
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
