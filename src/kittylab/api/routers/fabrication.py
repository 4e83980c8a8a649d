"""CAD jobs and artifacts, fabrication jobs and their print-monitor events (read side;
the CAD and devices services create them)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy import select

from kittylab.adapters.db.tables import CADArtifact, CADJob, FabricationJob, PrintMonitorEvent
from kittylab.api.auth import Caller, UnitOfWork
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import CADArtifactOut, CADJobOut, FabricationJobOut, MonitorEventOut
from kittylab.domain.enums import (
    ArtifactType,
    CADJobStatus,
    CADProvider,
    FabricationStatus,
    MonitorEventType,
)

router = APIRouter(prefix="/api", tags=["fabrication"])


@router.get("/cad/jobs", response_model=Page[CADJobOut])
def list_cad_jobs(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: CADJobStatus | None = None,
    conversation_id: Annotated[UUID | None, Query(alias="conversationId")] = None,
) -> Page[CADJobOut]:
    stmt = where_equal(
        select(CADJob), (CADJob.status, status), (CADJob.conversation_id, conversation_id)
    )
    return paginate(uow, stmt, CADJob.id, cursor, limit, CADJobOut.model_validate)


@router.get("/cad/jobs/{job_id}", response_model=CADJobOut)
def get_cad_job(job_id: UUID, _: Caller, uow: UnitOfWork) -> CADJob:
    return get_or_404(uow, CADJob, job_id, "CAD job")


@router.get("/cad/artifacts", response_model=Page[CADArtifactOut])
def list_cad_artifacts(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    cad_job_id: Annotated[UUID | None, Query(alias="cadJobId")] = None,
    provider: CADProvider | None = None,
    artifact_type: Annotated[ArtifactType | None, Query(alias="artifactType")] = None,
) -> Page[CADArtifactOut]:
    stmt = where_equal(
        select(CADArtifact),
        (CADArtifact.cad_job_id, cad_job_id),
        (CADArtifact.provider, provider),
        (CADArtifact.artifact_type, artifact_type),
    )
    return paginate(uow, stmt, CADArtifact.id, cursor, limit, CADArtifactOut.model_validate)


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
