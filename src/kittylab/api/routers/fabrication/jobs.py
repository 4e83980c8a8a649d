"""``/api/fabrication/jobs``: print jobs — queue one on a printer from an uploaded file or a
CAD artifact, list and read them, cancel one. (A job's snapshots and monitor events have
their own routers, ``snapshots.py`` and ``monitor_events.py``.)"""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy import select

from kittylab.adapters.db.tables import Device, FabricationJob
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.routers.fabrication.callers import PrintCaller, artifact_store
from kittylab.api.schemas import FabricationJobOut, PrintJobRequest
from kittylab.bootstrap import Container
from kittylab.devices import dispatch
from kittylab.domain.enums import FabricationStatus, OnlineState, Role
from kittylab.domain.errors import (
    Conflict,
    InfrastructureError,
    KittyLabError,
    NotFound,
    PermissionDenied,
)
from kittylab.fabrication import jobs as fabrication
from kittylab.fabrication import records as fabrication_records
from kittylab.fabrication import uploads

log = logging.getLogger(__name__)

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
    used for a different request). The job is accepted once it is recorded: if its
    preparation cannot be queued right now, the minutely queue task prepares it."""
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
    job = fabrication.create_job(
        uow,
        artifact_store(c),
        device_id=body.device_id,
        requested_by=caller.user_id,
        file_key=body.file_key,
        cad_artifact_id=body.cad_artifact_id,
        profile=body.profile,
        scenes=c.settings.fabrication.scenes,
        now=c.clock(),
        idempotency_key=body.idempotency_key,
    )
    uow.commit()  # the preparation job must find the row
    try:
        c.jobs.defer_print_preparation(job.id)
    except InfrastructureError:
        # The job is recorded: failing now would make the client retry into a second
        # print while this one is prepared anyway by the sweep (advance_print_queues).
        log.warning("preparation of job %s left to the periodic queue task", job.id)
    return job


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
    # Locked: a worker starting this job at the same moment sees the outcome, not a race.
    job = uow.get(FabricationJob, job_id, with_for_update=True)
    if job is None:
        raise NotFound("fabrication job", job_id)
    if job.requested_by != caller.user_id and not caller.has_any(
        Role.OPERATOR, Role.SAFETY, Role.ADMIN
    ):
        raise PermissionDenied("only operators cancel other people's print jobs")
    if job.status is FabricationStatus.PREPARING:
        started = job.origin_command_id is not None
        aborted = fabrication_records.advance_fabrication_job(
            uow, job_id, FabricationStatus.ABORTED, now=c.clock(), reason="cancelled"
        )
        if started:
            _cancel_on_printer(uow, c, aborted, caller.user_id)
        return aborted
    if job.status not in (FabricationStatus.PRINTING, FabricationStatus.PAUSED):
        raise Conflict(f"the job is {job.status.value}; there is nothing to cancel")
    printer = uow.get(Device, job.device_id)
    if printer is not None and printer.online_state is OnlineState.OFFLINE:
        return fabrication_records.advance_fabrication_job(
            uow,
            job_id,
            FabricationStatus.ABORTED,
            now=c.clock(),
            reason=f"cancelled while {printer.display_name} was offline: nothing was sent to "
            "it. Check the printer (it may still hold the part, or even be printing it) "
            "before confirming the bed clear",
        )
    command = dispatch.submit(
        uow,
        device_id=job.device_id,
        intent="print_cancel",
        payload={},
        requested_by=caller.user_id,
        correlation_id=f"cancel-job:{job_id}",
        now=c.clock(),
    )
    uow.commit()
    _defer_quietly(c, command.id)
    return job


def _cancel_on_printer(uow: UnitOfWork, c: Container, job: FabricationJob, user_id: UUID) -> None:
    """A job aborted while its start was on the way: cancel whatever the printer began.
    Best effort — a printer that never started refuses, which is what we want."""
    try:
        with uow.begin_nested():
            command = dispatch.submit(
                uow,
                device_id=job.device_id,
                intent="print_cancel",
                payload={},
                requested_by=user_id,
                correlation_id=f"cancel-job:{job.id}",
                now=c.clock(),
            )
    except KittyLabError:
        return
    uow.commit()
    _defer_quietly(c, command.id)


def _defer_quietly(c: Container, command_id: UUID) -> None:
    try:
        c.jobs.defer_dispatch(command_id)
    except InfrastructureError:
        log.warning("cancel %s left to reconciliation", command_id)
