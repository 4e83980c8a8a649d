"""``/api/fabrication/jobs``: print jobs — queue one on a printer from an uploaded file or a
CAD artifact, list and read them, cancel one. (A job's snapshots and monitor events have
their own routers, ``snapshots.py`` and ``monitor_events.py``.)"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy import select

from kittylab.adapters.db.tables import FabricationJob
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.routers.fabrication.callers import PrintCaller, artifact_store
from kittylab.api.schemas import FabricationJobOut, PrintJobRequest
from kittylab.bootstrap import Container
from kittylab.domain.enums import FabricationStatus
from kittylab.fabrication import jobs as fabrication
from kittylab.fabrication import uploads

router = APIRouter(prefix="/api/fabrication/jobs", tags=["fabrication"])


@router.get("", response_model=Page[FabricationJobOut])
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


@router.get("/{job_id}", response_model=FabricationJobOut)
def get_fabrication_job(job_id: UUID, _: Caller, uow: UnitOfWork) -> FabricationJob:
    return get_or_404(uow, FabricationJob, job_id, "fabrication job")


@router.post(
    "",
    response_model=FabricationJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "No such printer or CAD artifact."}},
)
def create_print_job(
    body: PrintJobRequest,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> FabricationJob:
    """Queue a print on a printer from an uploaded file or a CAD artifact. Models are
    sliced first (``details.stage`` = ``slicing``), then the job waits in the printer's
    queue (``queued``) until the printer is free and its bed confirmed clear. A retried
    request with the same ``idempotencyKey`` returns the first job (409 when the key was
    used for a different request). The job is accepted once it is recorded; its
    preparation is queued once the request commits (if it cannot be right now, the
    minutely queue task prepares it)."""
    if body.idempotency_key is not None:
        earlier = fabrication.find_retry(
            uow,
            caller.user_id,
            body.idempotency_key,
            device_id=body.device_id,
            file_key=body.file_key,
            cad_artifact_id=body.cad_artifact_id,
            profile=body.profile,
        )
        if earlier is not None:
            return earlier  # its preparation was queued by the first request, or the sweep's
    if body.file_key is not None:
        uploads.hold_uploads(uow)  # retention must not remove the file before the commit
    return fabrication.create_job(
        uow,
        artifact_store(c),
        jobs=c.jobs,
        device_id=body.device_id,
        requested_by=caller.user_id,
        file_key=body.file_key,
        cad_artifact_id=body.cad_artifact_id,
        profile=body.profile,
        scenes=c.settings.fabrication.scenes,
        now=c.clock(),
        idempotency_key=body.idempotency_key,
        material=body.material,
        ppe_confirmed=body.ppe_confirmed,
    )


@router.post("/{job_id}/cancel", response_model=FabricationJobOut)
def cancel_print_job(
    job_id: UUID,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> FabricationJob:
    """Cancel a job: one not yet on the printer is aborted at once; a running one gets a
    ``print_cancel`` command and is aborted when the printer reports it. A running job on
    a printer that is offline is aborted at once with the reason: nothing could reach the
    printer, and its queue must not wait for it."""
    return fabrication.cancel_job(uow, job_id, caller, c.clock(), jobs=c.jobs)
