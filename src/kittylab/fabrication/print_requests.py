"""Every print is a job (issue 16): a person's ``print_start`` becomes a FabricationJob.

Whoever asks a printer to print — ``POST /api/device/{id}/command`` with ``print_start``,
the conversation ("print bracket.gcode on the prusa"), a voice turn — gets a print job, so
the print is queued (one job at a time per printer, the bed confirmed clear), started by
the service, followed by the tracker and watched by the print watcher. Nothing prints
unmonitored: ``devices.requests.request_command`` refuses a person's ``print_start``
outright, and only the service's own start of a job (``jobs.submit_start``, a
``SystemActor`` through ``dispatch.submit``) sends one — which is why a job's start never
becomes a second job.

    print_start {file} by a person
      │  authorise_print (domain.actuation): operator, engineer, safety, admin; inside the
      │  trusted networks
      │  a retry (same correlation id) ─────────────────────────────▶ the first job
      │  refused now what its start would meet now (``_check_startable``): the payload
      │  and file name, not a printer, locked out, offline, busy, the last print still on
      │  the bed, hazardous (a job's start cannot be held for approval)
      ▼
    the requester's newest upload of that name ──▶ ``jobs.create_job`` (G-code policy,
                                                   slicing of a model, materials)
    otherwise a file on the printer's own storage ─▶ a job queued at once,
                                                   ``JobDetails.printer_file``; nothing is
                                                   uploaded when it starts

Once the request commits, the printer's queue looks (``defer_start_next``; a model is
prepared first). The person hears the job, not a command: the route answers ``jobId``
with ``status: queued``, the conversation says where the print stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from kittylab.adapters.db.tables import Device, FabricationJob
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.devices import dispatch
from kittylab.domain import actuation
from kittylab.domain.errors import Conflict, NotFound
from kittylab.domain.principal import Principal
from kittylab.domain.print_queue import Stage
from kittylab.fabrication import job_details, uploads
from kittylab.fabrication import jobs as fabrication_jobs
from kittylab.fabrication import records as fabrication_records
from kittylab.fabrication.job_details import JobDetails
from kittylab.ports import JobQueue
from kittylab.records.ports import ArtifactStore

PRINT_INTENT = "print_start"

Channel = Literal["command", "conversation"]
"""How the print was asked for (kept on the job as ``JobDetails.requested_via``)."""


@dataclass(frozen=True)
class PrintQueued:
    """The print job a person's ``print_start`` became."""

    job: FabricationJob
    source: Literal["upload", "printer"]
    """``upload``: the requester's own upload of that name; ``printer``: a file already on
    the printer's storage."""
    retried: bool = False
    """A retried request (same correlation id): the first request's job."""

    @property
    def file(self) -> str:
        return job_details.read(self.job).source_name or self.job.gcode_path


def request_print(
    uow: UnitOfWork,
    store: ArtifactStore | None,
    *,
    jobs: JobQueue,
    device_id: UUID,
    payload: Mapping[str, Any],
    requester: Principal,
    now: datetime,
    via: Channel,
    correlation_id: str | None = None,
    conversation_id: UUID | None = None,
    scenes: Mapping[str, Any] | None = None,
) -> PrintQueued:
    """Record the print job for a person's ``print_start`` (see the module doc).

    ``payload`` is the ``print_start`` payload (``{"file": "<plain name>"}``). ``store``
    None (a wiring without an artifact store) knows only the printer's own files. A
    ``correlation_id`` makes the request idempotent per requester: a retry returns the
    first job; the same id for another print is ``Conflict`` on ``correlationId``.

    Refusals are those of the command path, raised before anything is recorded:
    ``PermissionDenied`` (role, lockout, hazardous), ``OutsideTrustedNetworks``,
    ``NotFound``, ``ValidationFailed`` (``intent``, ``payload.file``), ``DeviceRefused``
    (offline, busy, the bed not clear)."""
    actuation.authorise_print(requester)
    file = payload.get("file")
    idempotency_key = f"{PRINT_INTENT}:{correlation_id}" if correlation_id else None
    if idempotency_key is not None and isinstance(file, str):
        earlier = _retry(uow, requester, idempotency_key, device_id, store, file)
        if earlier is not None:
            return earlier
    _check_startable(
        uow, device_id=device_id, payload=payload, requested_by=requester.user_id, now=now
    )
    assert isinstance(file, str)  # the payload's schema, checked just above
    upload = uploads.latest_upload(store, requester.user_id, file) if store else None
    if upload is not None and store is not None:
        uploads.hold_uploads(uow)  # retention must not remove the file before the commit
        job = fabrication_jobs.create_job(
            uow,
            store,
            jobs=jobs,
            device_id=device_id,
            requested_by=requester.user_id,
            now=now,
            file_key=upload,
            scenes=scenes,
            idempotency_key=idempotency_key,
        )
        _asked_via(job, via, conversation_id)
        return PrintQueued(job, "upload")
    job = _printer_file_job(uow, jobs, device_id, file, requester.user_id, now, idempotency_key)
    _asked_via(job, via, conversation_id)
    return PrintQueued(job, "printer")


def _asked_via(job: FabricationJob, via: Channel, conversation_id: UUID | None) -> None:
    details = job_details.read(job)
    job_details.write(
        job,
        replace(
            details,
            requested_via=via,
            conversation_id=conversation_id or details.conversation_id,
        ),
    )


def _retry(
    uow: UnitOfWork,
    requester: Principal,
    idempotency_key: str,
    device_id: UUID,
    store: ArtifactStore | None,
    file: str,
) -> PrintQueued | None:
    """The job a retried request already made, if any (``jobs.find_retry``, whose lock
    holds a racing twin until this request commits)."""
    upload = uploads.latest_upload(store, requester.user_id, file) if store else None
    try:
        earlier = fabrication_jobs.find_retry(
            uow,
            requester.user_id,
            idempotency_key,
            device_id=device_id,
            file_key=upload or printer_path(file),
            cad_artifact_id=None,
            profile="default",
        )
    except Conflict:
        raise Conflict(
            "correlationId was already used for a different print", field="correlationId"
        ) from None
    if earlier is None:
        return None
    source: Literal["upload", "printer"] = (
        "printer" if job_details.read(earlier).printer_file is not None else "upload"
    )
    return PrintQueued(earlier, source, retried=True)


def _check_startable(
    uow: UnitOfWork,
    *,
    device_id: UUID,
    payload: Mapping[str, Any],
    requested_by: UUID,
    now: datetime,
) -> None:
    """Raise what the job's start would meet if it were sent now: the command path's own
    rules (``dispatch.submit``: payload and file name, capability, lockout, hazard, online
    state, the bed, the printer's state), checked in a savepoint that is rolled back — one
    rule set, no copy of it. A print that cannot start now is refused now, with the reason,
    as a ``print_start`` always was; a locked or busy printer never silently collects a
    job that would start the moment it is free. No safety context: a hazardous
    ``print_start`` is refused, since a job's start cannot be held for approval."""
    savepoint = uow.begin_nested()
    try:
        dispatch.submit(
            uow,
            device_id=device_id,
            intent=PRINT_INTENT,
            payload=payload,
            requested_by=requested_by,
            now=now,
        )
    finally:
        savepoint.rollback()


def printer_path(file: str) -> str:
    """The ``gcode_path`` of a job for ``file`` on the printer's own storage."""
    return f"{fabrication_jobs.PRINTER_PATH_PREFIX}{file}"


def _printer_file_job(
    uow: UnitOfWork,
    jobs: JobQueue,
    device_id: UUID,
    file: str,
    requested_by: UUID,
    now: datetime,
    idempotency_key: str | None,
) -> FabricationJob:
    """A job for a file already on the printer: nothing to slice or check here (the
    printer holds the G-code; ``docs/fabrication.md`` says what the firmware must still
    guard), so it joins the queue at once and the queue looks once this commits."""
    device = uow.get(Device, device_id)
    if device is None:
        raise NotFound("device", device_id)
    path = printer_path(file)
    job = fabrication_records.create_fabrication_job(
        uow,
        device=device,
        gcode_path=path,
        requested_by=requested_by,
        details=JobDetails(
            stage=Stage.QUEUED,
            queued_at=now,
            printer_file=file,
            source_key=path,
            source_name=file,
            needs_slicing=False,
            profile=job_details.DEFAULT_PROFILE,
            idempotency_key=idempotency_key,
        ),
        now=now,
    )
    uow.after_commit(jobs.defer_start_next, device_id)
    return job


def describe(queued: PrintQueued, printer: str) -> str:
    """The print job in one sentence, for the conversation."""
    where = "your upload" if queued.source == "upload" else f"the file on {printer}"
    job = str(queued.job.id)[:8]
    if queued.retried:
        return f"Printing {queued.file} on {printer} is print job {job} already."
    return (
        f"Queued {queued.file} ({where}) on {printer} as print job {job}: it starts as soon "
        "as the printer takes it, and is followed and watched while it prints."
    )
