"""Print jobs: upload a file, queue it on a printer, confirm the bed is clear, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from kittylab.adapters.db.tables import Device, FabricationJob
from kittylab.api.auth import Caller, UnitOfWork, container, require
from kittylab.api.schemas import (
    BedClearOut,
    FabricationJobOut,
    MonitorEventIn,
    MonitorReportOut,
    PrintJobRequest,
    SnapshotOut,
    UploadedFileOut,
)
from kittylab.bootstrap import Container
from kittylab.devices import dispatch
from kittylab.domain import file_names
from kittylab.domain.enums import FabricationStatus, OnlineState, Role
from kittylab.domain.errors import (
    Conflict,
    InfrastructureError,
    KittyLabError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from kittylab.domain.principal import Principal
from kittylab.domain.print_queue import needs_slicing
from kittylab.fabrication import jobs as fabrication
from kittylab.fabrication import records as fabrication_records
from kittylab.fabrication import uploads
from kittylab.monitoring import reports
from kittylab.records.ports import ArtifactMissing, ArtifactStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/fabrication", tags=["fabrication"])

PrintCaller = Annotated[
    Principal, Depends(require(Role.OPERATOR, Role.ENGINEER, Role.SAFETY, Role.ADMIN))
]
# Detectors are integrations (admin tokens); operators and safety leads report by eye.
MonitorCaller = Annotated[Principal, Depends(require(Role.OPERATOR, Role.SAFETY, Role.ADMIN))]
_BINARY = {"type": "string", "format": "binary"}
_FILENAME = file_names.name_regex(max_length=120)  # so a sliced "<stem>.gcode" still fits


def _store(c: Container) -> ArtifactStore:
    return c.artifacts


@router.put(
    "/files/{filename}",
    response_model=UploadedFileOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    responses={
        413: {
            "description": "Over KITTYLAB_FABRICATION__MAX_UPLOAD_BYTES, or past the "
            "uploader's or the lab's upload quota (the problem's type and detail say which)."
        },
        507: {"description": "The artifact store's disk is down to its reserve of free space."},
    },
)
async def upload_file(
    filename: str,
    request: Request,
    caller: PrintCaller,
    c: Annotated[Container, Depends(container)],
) -> UploadedFileOut:
    """Upload G-code or a model (STL, STEP, 3MF, OBJ) as the raw request body; use the
    returned ``fileKey`` in ``POST /api/fabrication/jobs``. Each person's uploads, and the
    lab's, have a quota (413 naming it); uploads no job uses are removed after the
    retention period."""
    if not _FILENAME.fullmatch(filename) or needs_slicing(filename) is None:
        raise ValidationFailed(
            "filename",
            "must be a plain file name ending in .gcode, .gco, .g, .stl, .step, .stp, .3mf or .obj",
        )
    # The body's size limit is the middleware's (kittylab.api.body_limit); quotas are ours.
    quotas = uploads.Quotas.from_settings(c.settings.fabrication)
    store = _store(c)
    used = await asyncio.to_thread(uploads.usage, store, caller.user_id)
    room = uploads.room(used, quotas)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        uploads.check(used, quotas, int(declared))  # refused before a byte is read
    fd, temp_name = tempfile.mkstemp(prefix="kittylab-upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > room:
                    uploads.check(used, quotas, size)
                out.write(chunk)
        if size == 0:
            raise ValidationFailed("body", "the file is empty")
        key = uploads.new_key(caller.user_id, filename, c.clock())
        stored = await asyncio.to_thread(
            store.put_file, key, Path(temp_name), content_type="application/octet-stream"
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    await asyncio.to_thread(uploads.settle, store, stored.key, caller.user_id, stored.size, quotas)
    return UploadedFileOut(
        file_key=stored.key, name=filename, size=stored.size, sha256=stored.sha256
    )


@router.post(
    "/jobs",
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
        _store(c),
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


@router.post("/printers/{device_id}/bed-clear", response_model=BedClearOut)
def confirm_bed_clear(
    device_id: UUID,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> BedClearOut:
    """Confirm the printer's bed is empty, so its next queued job may start."""
    covered = fabrication.confirm_bed_clear(uow, device_id, caller.user_id, c.clock())
    uow.commit()
    try:
        c.jobs.defer_start_next(device_id)
    except InfrastructureError:
        log.warning("print queue of %s left to the periodic task", device_id)
    return BedClearOut(device_id=device_id, jobs_cleared=covered)


@router.post("/jobs/{job_id}/cancel", response_model=FabricationJobOut)
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


SNAPSHOT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}
_SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.(jpe?g|png)", re.IGNORECASE)


@router.put(
    "/jobs/{job_id}/snapshots/{name}",
    response_model=SnapshotOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"image/jpeg": {"schema": _BINARY}, "image/png": {"schema": _BINARY}},
        }
    },
)
async def upload_snapshot(
    job_id: UUID,
    name: str,
    request: Request,
    _: MonitorCaller,
    c: Annotated[Container, Depends(container)],
) -> SnapshotOut:
    """Keep a camera snapshot of a job as evidence; name it in a monitor event."""
    match = _SNAPSHOT_NAME.fullmatch(name)
    if match is None:
        raise ValidationFailed("name", "must be a plain file name ending in .jpg, .jpeg or .png")
    body = await request.body()
    if not body:
        raise ValidationFailed("body", "the snapshot is empty")
    if not (body.startswith(b"\xff\xd8") or body.startswith(b"\x89PNG")):
        raise ValidationFailed("body", "is not a JPEG or PNG image")
    exists = await asyncio.to_thread(_job_exists, c, job_id)
    if not exists:
        raise NotFound("fabrication job", job_id)
    key = f"snapshots/{job_id}/{c.clock():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}-{name}"
    stored = await asyncio.to_thread(
        _store(c).put_bytes, key, body, content_type=SNAPSHOT_TYPES[match.group(1).lower()]
    )
    return SnapshotOut(snapshot_key=stored.key, size=stored.size)


SERVED_TYPES = {**SNAPSHOT_TYPES, "json": "application/json"}
# What the API and the print watcher store: images, and the watcher's telemetry windows.
_STORED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(jpe?g|png|json)", re.IGNORECASE)


@router.get(
    "/jobs/{job_id}/snapshots/{name}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {t: {} for t in sorted(set(SERVED_TYPES.values()))}},
        307: {"description": "To a presigned URL, when the store gives one (S3)."},
        404: {"description": "No such job, or no such snapshot of it."},
    },
)
def download_snapshot(
    job_id: UUID,
    name: str,
    _: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    """A job's monitoring evidence — a camera snapshot, or the telemetry window a rule
    judged — as linked from its notifications: streamed from the store, or a redirect to a
    presigned URL when the store can give one."""
    match = _STORED_NAME.fullmatch(name)
    job = uow.get(FabricationJob, job_id)
    if job is None:
        raise NotFound("fabrication job", job_id)
    key = f"snapshots/{job_id}/{name}"
    store = _store(c)
    if match is None or not store.exists(key):
        raise NotFound("snapshot of this job", name)
    url = store.presigned_url(key, c.settings.storage.presign_expiry_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    try:
        chunks: Iterator[bytes] = store.read_chunks(key)
    except ArtifactMissing:
        raise NotFound("snapshot of this job", name) from None
    return StreamingResponse(
        chunks,
        media_type=SERVED_TYPES[match.group(1).lower()],
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


def _job_exists(c: Container, job_id: UUID) -> bool:
    with c.database.unit_of_work() as session:
        return session.get(FabricationJob, job_id) is not None


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
    ``severity: warning`` only tells them."""
    if body.snapshot_key is not None and not body.snapshot_key.startswith(f"snapshots/{job_id}/"):
        raise ValidationFailed("snapshotKey", "must be a snapshot uploaded for this job")
    if body.snapshot_key is not None and not _store(c).exists(body.snapshot_key):
        raise ValidationFailed("snapshotKey", "no snapshot is stored under this key")
    try:
        outcome = reports.report(
            uow,
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
    uow.commit()
    if outcome.pause_command_id is not None:
        try:
            c.jobs.defer_dispatch(outcome.pause_command_id)
        except InfrastructureError:
            log.warning("pause %s left to reconciliation", outcome.pause_command_id)
    for notification_id in outcome.notification_ids:
        try:
            c.jobs.defer_notification(notification_id)
        except InfrastructureError:
            log.warning("notification %s left to the sweep", notification_id)
    return MonitorReportOut(
        event_id=outcome.event.id,
        pause_command_id=outcome.pause_command_id,
        notified=len(outcome.notification_ids),
        note=outcome.note,
    )
