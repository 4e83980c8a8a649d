"""Print jobs from file to finished part.

    upload ─▶ create_job ─▶ prepare (slice or read G-code) ─▶ queue ─▶ start ─▶ follow
                                                              ▲                   │
                                           bed clear ─────────┘◀── job ends ◀─────┘

- ``create_job`` records a ``preparing`` job from an uploaded file (G-code, or a model to
  slice) or a CAD artifact, and registers ``prepare`` for once it commits.
- ``prepare`` (a background job) slices when needed, checks the G-code against the
  printer's G-code policy (``fabrication.gcode_gate``: an uploaded file, the slicer's output,
  and the G-code a 3MF project carries), keeps it in the artifact store under the job's
  ``gcode_path`` and records the slicer's estimates; the job joins its printer's queue.
  A file that breaks the policy fails the job with the line numbers and reasons and is
  never stored as the job's G-code nor sent.
- ``start_next`` (a background job, run whenever a printer's queue may move) starts the
  oldest queued job once the printer is free and its bed confirmed clear: the G-code goes
  to the printer, then a ``print_start`` command through the normal command path.
- ``follow`` (the server's job tracker) moves each active job with what its printer
  reports (``domain.print_queue.follow_printer``) and publishes progress.
- ``confirm_bed_clear`` and ``cancel_job``: a person's word on a printer and on a job; the
  queue's next look and a cancel's dispatch are registered for after their commit.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import CADArtifact, Device, DeviceCommand, FabricationJob
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.devices import dispatch, telemetry
from kittylab.devices.requests import authorise_request, request_command
from kittylab.domain.actuation import SystemActor
from kittylab.domain.enums import ArtifactType, DeviceKind, FabricationStatus, OnlineState, Role
from kittylab.domain.errors import (
    Conflict,
    DeviceRefused,
    KittyLabError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from kittylab.domain.gcode_policy import GcodePolicy, policy_from_attributes
from kittylab.domain.principal import Principal
from kittylab.domain.print_queue import (
    FINISHED,
    JobUpdate,
    QueuedJob,
    Stage,
    follow_printer,
    following_printer,
    lost_printer,
    needs_slicing,
    next_job,
)
from kittylab.fabrication import job_details
from kittylab.fabrication import materials as hazmat
from kittylab.fabrication import records as fabrication_records
from kittylab.fabrication.gcode_gate import GcodeRefused, check_archive, check_file
from kittylab.fabrication.job_details import BedCleared, Estimates, JobDetails
from kittylab.fabrication.ports import SliceProfile, Slicer
from kittylab.ports import JobQueue
from kittylab.records.ports import ArtifactStore, validate_key

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "uploads/"
_MODEL_ARTIFACTS = {ArtifactType.STL: ".stl", ArtifactType.STEP: ".step", ArtifactType.OBJ: ".obj"}


@dataclass(frozen=True)
class SliceEstimate:
    """What the G-code says about itself (PrusaSlicer's summary comments)."""

    seconds: float | None
    filament_mm: float | None
    filament_g: float | None
    filament_type: str | None = None
    """The filament profile's type (``ABS``, ``PA6-CF``): what ``materials`` classifies."""


GcodeReader = Callable[[Path], SliceEstimate | None]
"""Reads the estimates a G-code file carries; None when it carries none."""

DEFAULT_PRINTER_PROFILE = "generic-220"


def create_job(
    session: UnitOfWork,
    store: ArtifactStore,
    *,
    jobs: JobQueue,
    device_id: UUID,
    requested_by: UUID,
    now: datetime,
    file_key: str | None = None,
    cad_artifact_id: UUID | None = None,
    profile: str = "default",
    scenes: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    material: str | None = None,
    ppe_confirmed: Sequence[str] = (),
) -> FabricationJob:
    """Record a job for the printer ``device_id`` from exactly one source (see
    ``find_retry`` for a request that carries an ``idempotency_key``, kept on the job).

    ``file_key``: an upload (``uploads/…``) that exists in the store; a model is sliced,
    G-code is printed as is. ``cad_artifact_id``: a STEP or STL artifact, sliced. Errors
    name the field: ``fileKey`` / ``cadArtifactId`` (neither or both, unknown, not
    printable), ``deviceId`` (not a printer, retired), ``profile`` (no such scene),
    ``ppeConfirmed`` (a hazardous ``material`` in a zone whose policy asks for PPE that was
    not confirmed: ``fabrication.materials``). The job is flagged when its material is
    hazardous (``JobDetails.hazardous_materials``).

    Its preparation is deferred once ``session`` commits (the job must find the row); if
    that fails, ``advance_print_queues`` prepares it later: the job is recorded, and
    failing the request would make the client retry into a second print."""
    if (file_key is None) == (cad_artifact_id is None):
        raise ValidationFailed("fileKey", "give exactly one of fileKey or cadArtifactId")
    if scenes is not None and profile not in scenes:
        raise ValidationFailed("profile", f"no job profile {profile!r}; known: {sorted(scenes)}")
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("device", device_id)
    if device.kind is not DeviceKind.PRINTER:
        raise ValidationFailed("deviceId", f"{device.display_name} is not a printer")
    source_key, source_name = _source(session, store, file_key, cad_artifact_id)
    slicing = needs_slicing(source_name)
    if slicing is None:
        raise ValidationFailed(
            "fileKey", f"{source_name} is not G-code or a model (STL, STEP, 3MF, OBJ)"
        )
    stem = source_name.rsplit(".", 1)[0] or "part"
    gcode_path = (
        f"fabrication/{now:%Y%m%d}-{secrets.token_hex(6)}/{stem}.gcode" if slicing else source_key
    )
    details = hazmat.flag(JobDetails(material=material or None, ppe_confirmed=tuple(ppe_confirmed)))
    refusal = hazmat.creation_refusal(session, device, details)
    if refusal is not None:
        raise refusal
    job = fabrication_records.create_fabrication_job(
        session,
        device=device,
        gcode_path=gcode_path,
        requested_by=requested_by,
        cad_artifact_id=cad_artifact_id,
        details=replace(
            details,
            stage=Stage.SLICING,
            source_key=source_key,
            source_name=source_name,
            needs_slicing=slicing,
            profile=profile,
            # Which slicer printer profile fits this printer: the device's attribute.
            printer_profile=str(device.attributes.get("slicer_profile") or DEFAULT_PRINTER_PROFILE),
            idempotency_key=idempotency_key,
        ),
        now=now,
    )
    session.after_commit(jobs.defer_print_preparation, job.id)
    return job


PRINTER_PATH_PREFIX = "printer:"
"""The ``gcode_path`` prefix of a job for a file already on the printer's own storage
(``JobDetails.printer_file``, issue 16, ``fabrication.print_requests``): the job prints it
as the printer has it, so nothing is uploaded at its start and no G-code of it passes
through the lab. No artifact key can start with it."""


def find_retry(
    session: Session,
    requested_by: UUID,
    idempotency_key: str,
    *,
    device_id: UUID,
    file_key: str | None,
    cad_artifact_id: UUID | None,
    profile: str,
) -> FabricationJob | None:
    """The job ``requested_by`` already created with ``idempotency_key``, if any: a
    retried request (a client that never saw the first answer) gets the first job, not a
    second print. The same key for a different request is ``Conflict`` on
    ``idempotencyKey``. Holds a transaction-scoped lock on (requester, key) until the
    caller commits, so a retry racing its original waits for it and then finds its job."""
    session.execute(
        select(
            func.pg_advisory_xact_lock(
                func.hashtextextended(f"fabrication-job:{requested_by}:{idempotency_key}", 0)
            )
        )
    )
    earlier = session.scalar(
        select(FabricationJob).where(
            FabricationJob.requested_by == requested_by,
            job_details.has_idempotency_key(idempotency_key),
        )
    )
    if earlier is None:
        return None
    details = job_details.read(earlier)
    asked = (device_id, file_key, cad_artifact_id, profile)
    first = (
        earlier.device_id,
        None if earlier.cad_artifact_id is not None else details.source_key,
        earlier.cad_artifact_id,
        details.job_profile,
    )
    if asked != first:
        raise Conflict(
            f"idempotencyKey was already used for a different print job ({earlier.id})",
            field="idempotencyKey",
        )
    return earlier


def _source(
    session: Session, store: ArtifactStore, file_key: str | None, cad_artifact_id: UUID | None
) -> tuple[str, str]:
    if file_key is not None:
        try:
            key = validate_key(file_key)
        except ValidationFailed:
            raise ValidationFailed("fileKey", "is not a file key from an upload") from None
        if not key.startswith(UPLOAD_PREFIX) or not store.exists(key):
            raise ValidationFailed("fileKey", "no uploaded file has this key")
        return key, key.rsplit("/", 1)[-1]
    assert cad_artifact_id is not None
    artifact = session.get(CADArtifact, cad_artifact_id)
    if artifact is None:
        raise NotFound("CAD artifact", cad_artifact_id)
    suffix = _MODEL_ARTIFACTS.get(artifact.artifact_type)
    if suffix is None:
        raise ValidationFailed(
            "cadArtifactId", f"a {artifact.artifact_type.value} artifact cannot be printed"
        )
    name = artifact.artifact_key.rsplit("/", 1)[-1]
    return artifact.artifact_key, name if name.lower().endswith(suffix) else name + suffix


def prepare(
    database: Database,
    store: ArtifactStore,
    slicer: Slicer | None,
    reader: GcodeReader | None,
    job_id: UUID,
    clock: Callable[[], datetime],
) -> bool:
    """Slice (or read) the job's file, check its G-code against the printer's policy;
    queue it. Returns True when the job is queued.

    Slicing failures fail the job with the slicer's reason; G-code the policy refuses
    fails it with the first violations (``JobDetails.reason``, and each with its line in
    ``JobDetails.gcode_violations``), as does a printer whose declared policy cannot be read
    (nothing is checked against a guess). Running again on a job past the slicing stage
    does nothing (a retried task)."""
    with database.unit_of_work() as session:
        job = session.get(FabricationJob, job_id)
        if job is None or job.status is not FabricationStatus.PREPARING:
            return False
        details = job_details.read(job)
        if details.stage is not Stage.SLICING:
            return details.stage is Stage.QUEUED
        gcode_path = job.gcode_path
        printer = session.get(Device, job.device_id)
        attributes = dict(printer.attributes) if printer is not None else {}
    try:
        policy = policy_from_attributes(attributes)
    except ValidationFailed as exc:
        reason = f"the printer's G-code policy cannot be read ({exc}); fix its manifest entry"
        _fail(database, job_id, reason, clock())
        return False
    try:
        facts = _produce_gcode(store, slicer, reader, details, gcode_path, policy)
    except GcodeRefused as refusal:
        reason = f"G-code refused by the printer's G-code policy: {refusal}"
        _fail(database, job_id, reason, clock(), refusal.violations())
        return False
    except KittyLabError as exc:
        # Unsliceable, no slicer, or the store lost the file: nothing a retry would fix
        # without someone looking, so the job fails with the reason.
        _fail(database, job_id, f"slicing failed: {exc}", clock())
        return False
    with database.unit_of_work() as session:
        job = session.get(FabricationJob, job_id, with_for_update=True)
        if job is None or job.status is not FabricationStatus.PREPARING:
            return False
        current = job_details.read(job)
        job_details.write(
            job,
            hazmat.flag(
                replace(
                    current,
                    stage=Stage.QUEUED,
                    queued_at=clock(),
                    estimates=facts.estimates or current.estimates,
                    filament_type=facts.filament_type or current.filament_type,
                    slicing=facts.slicing if facts.slicing is not None else current.slicing,
                )
            ),
        )
    return True


@dataclass(frozen=True)
class GcodeFacts:
    """What a job's G-code says, to keep on the job (None: nothing new, keep what it has)."""

    estimates: Estimates | None = None
    filament_type: str | None = None
    slicing: Mapping[str, Any] | None = None
    """How it was sliced (``SliceResult.as_metadata``)."""


def _produce_gcode(
    store: ArtifactStore,
    slicer: Slicer | None,
    reader: GcodeReader | None,
    details: JobDetails,
    gcode_path: str,
    policy: GcodePolicy,
) -> GcodeFacts:
    """Slice the job's model into its G-code (or read the G-code it came with), checked
    against ``policy`` before it is kept (``GcodeRefused``); returns the facts to keep on
    the job: estimated time and filament, and how it was sliced."""
    if not details.needs_slicing:
        with tempfile.TemporaryDirectory(prefix="kittylab-gcode-") as tmp:
            local = Path(tmp) / "job.gcode"
            store.download_to(gcode_path, local)
            check_file(local, policy)
            return _estimate_facts(reader(local)) if reader is not None else GcodeFacts()
    if slicer is None:
        raise DeviceRefused("no slicer is installed; upload G-code instead")
    with tempfile.TemporaryDirectory(prefix="kittylab-slice-") as tmp:
        model = Path(tmp) / str(details.source_name)
        store.download_to(str(details.source_key), model)
        if model.suffix.lower() == ".3mf":
            # A project may carry G-code of its own (a Bambu plate's): it must pass too.
            check_archive(model, policy)
        gcode = Path(tmp) / "out.gcode"
        profile = SliceProfile(printer=details.printer_profile or DEFAULT_PRINTER_PROFILE)
        result = slicer.slice(model, gcode, profile=profile)
        # The slicer's output is checked like an upload: a filament profile hotter than
        # the printer's limit is refused, and nothing refused is ever stored.
        check_file(gcode, policy)
        store.put_file(gcode_path, gcode, content_type="text/x.gcode")
        sliced = reader(gcode) if reader is not None else None
        return GcodeFacts(
            estimates=Estimates(result.estimated_seconds, result.filament_mm, result.filament_g),
            filament_type=sliced.filament_type if sliced else None,
            slicing=result.as_metadata(),
        )


def _estimate_facts(estimate: SliceEstimate | None) -> GcodeFacts:
    if estimate is None:
        return GcodeFacts()
    return GcodeFacts(
        estimates=Estimates(estimate.seconds, estimate.filament_mm, estimate.filament_g),
        filament_type=estimate.filament_type,
    )


def _fail(
    database: Database,
    job_id: UUID,
    reason: str,
    now: datetime,
    violations: Sequence[Mapping[str, Any]] = (),
) -> None:
    with database.unit_of_work() as session:
        job = fabrication_records.advance_fabrication_job(
            session, job_id, FabricationStatus.FAILED, now=now, reason=reason
        )
        if violations:
            details = job_details.read(job)
            job_details.write(job, replace(details, gcode_violations=tuple(violations)))


def printer_jobs(session: Session, device_id: UUID) -> list[QueuedJob]:
    rows = session.scalars(select(FabricationJob).where(FabricationJob.device_id == device_id))
    return [_queued(row, job_details.read(row)) for row in rows]


def _queued(row: FabricationJob, details: JobDetails) -> QueuedJob:
    return QueuedJob(
        id=row.id,
        status=row.status,
        stage=details.stage,
        created_at=row.created_at,
        completed_at=row.completed_at,
        bed_cleared=details.bed_cleared is not None,
        started_at=row.started_at,
        reached_printer=details.reached_printer,
    )


@dataclass(frozen=True)
class StartPlan:
    job_id: UUID
    device_id: UUID
    gcode_path: str
    filename: str
    requested_by: UUID
    on_printer: bool = False
    """The file is already on the printer's own storage: nothing to upload."""


def claim_next(database: Database, device_id: UUID, now: datetime) -> StartPlan | str | None:
    """Pick the job to start on ``device_id`` and mark it ``starting`` (committed, under a
    lock on the printer so two workers never start two jobs); or say why none starts."""
    with database.unit_of_work() as session:
        device = session.get(Device, device_id, with_for_update=True)
        if device is None:
            return None
        step = next_job(printer_jobs(session, device_id))
        if step.start is None:
            return step.waiting_for
        job = session.get(FabricationJob, step.start, with_for_update=True)
        assert job is not None
        details = job_details.write(
            job, replace(job_details.read(job), stage=Stage.STARTING, starting_at=now)
        )
        printer_file = details.printer_file
        return StartPlan(
            job_id=job.id,
            device_id=device_id,
            gcode_path=job.gcode_path,
            filename=str(printer_file or job.gcode_path.rsplit("/", 1)[-1]),
            requested_by=job.requested_by,
            on_printer=printer_file is not None,
        )


def submit_start(database: Database, plan: StartPlan, now: datetime) -> UUID | None:
    """Create the ``print_start`` command for a claimed job (idempotent per job); on a
    refusal the job goes back to the queue with the reason. Returns the command id."""
    with database.unit_of_work() as session:
        job = session.get(FabricationJob, plan.job_id, with_for_update=True)
        if (
            job is None
            or job.status is not FabricationStatus.PREPARING
            or job_details.read(job).stage is not Stage.STARTING
        ):
            return None  # cancelled (or otherwise moved) while it was being started
        printer = session.get(Device, plan.device_id)
        details = job_details.read(job)
        waiting = hazmat.start_refusal(session, printer, details) if printer else None
        if waiting is not None:
            _requeue(session, plan.job_id, waiting)
            return None
        try:
            # The start is the service's, on behalf of the job's owner (who may queue a
            # print without the role to switch a printer): through the same gate as all.
            authorise_request(
                session,
                SystemActor("print job start", plan.requested_by),
                device_id=plan.device_id,
                intent="print_start",
            )
            command = dispatch.submit(
                session,
                device_id=plan.device_id,
                intent="print_start",
                payload={"file": plan.filename},
                requested_by=plan.requested_by,
                correlation_id=f"fabrication-job:{plan.job_id}",
                now=now,
            )
        except KittyLabError as refusal:
            session.rollback()
            _requeue(session, plan.job_id, str(refusal))
            return None
        job.origin_command_id = command.id
        return command.id


def _requeue(session: Session, job_id: UUID, reason: str) -> None:
    job = session.get(FabricationJob, job_id, with_for_update=True)
    if job is not None and job.status is FabricationStatus.PREPARING:
        details = job_details.read(job)
        job_details.write(job, replace(details, stage=Stage.QUEUED, waiting_for=reason))


def requeue_interrupted_starts(database: Database, now: datetime, grace: timedelta) -> int:
    """Put back in the queue jobs left ``starting`` with no start command for longer than
    ``grace`` (a worker died between claiming and starting them); returns how many."""
    with database.unit_of_work() as session:
        rows = session.scalars(
            select(FabricationJob)
            .where(
                FabricationJob.status == FabricationStatus.PREPARING,
                FabricationJob.origin_command_id.is_(None),
                job_details.in_stage(Stage.STARTING),
            )
            .with_for_update(skip_locked=True)
        ).all()
        moved = 0
        for row in rows:
            since = job_details.read(row).starting_at
            if since is None or now - since > grace:
                _requeue(session, row.id, "its start was interrupted; it is back in the queue")
                moved += 1
        return moved


def requeue(database: Database, job_id: UUID, reason: str) -> None:
    with database.unit_of_work() as session:
        _requeue(session, job_id, reason)


def confirm_bed_clear(
    session: UnitOfWork, device_id: UUID, user_id: UUID, now: datetime, *, jobs: JobQueue
) -> int:
    """Record that the printer's bed is clear; returns how many finished jobs it covers.
    Once that commits, the printer's queue may move (``start_next`` is deferred; the
    minutely ``advance_print_queues`` otherwise).

    ``Conflict`` while a job is printing, paused or starting on it (its part is still on
    the bed by definition)."""
    device = session.get(Device, device_id, with_for_update=True)
    if device is None:
        raise NotFound("device", device_id)
    if device.kind is not DeviceKind.PRINTER:
        raise ValidationFailed("deviceId", f"{device.display_name} is not a printer")
    rows = list(
        session.scalars(select(FabricationJob).where(FabricationJob.device_id == device_id))
    )
    busy = [
        r
        for r in rows
        if r.status in (FabricationStatus.PRINTING, FabricationStatus.PAUSED)
        or (job_details.read(r).stage is Stage.STARTING and r.status is FabricationStatus.PREPARING)
    ]
    if busy:
        raise Conflict(f"{device.display_name} is printing job {busy[0].id}", field="deviceId")
    covered = 0
    for row in rows:
        details = job_details.read(row)
        if row.status in FINISHED and details.bed_cleared is None:
            job_details.write(row, replace(details, bed_cleared=BedCleared(user_id, now)))
            covered += 1
    session.after_commit(jobs.defer_start_next, device_id)
    return covered


def cancel_job(
    uow: UnitOfWork, job_id: UUID, by: Principal, now: datetime, *, jobs: JobQueue
) -> FabricationJob:
    """Cancel a job: one not yet on the printer is aborted at once; a running one gets a
    ``print_cancel`` command (dispatched once this commits) and is aborted when the
    printer reports it. A running job on a printer that is offline is aborted at once with
    the reason: nothing could reach the printer, and its queue must not wait for it.

    Only its requester and operators, safety and admins cancel a job
    (``PermissionDenied``); a job that is over is ``Conflict``."""
    # Locked: a worker starting this job at the same moment sees the outcome, not a race.
    job = uow.get(FabricationJob, job_id, with_for_update=True)
    if job is None:
        raise NotFound("fabrication job", job_id)
    if job.requested_by != by.user_id and not by.has_any(Role.OPERATOR, Role.SAFETY, Role.ADMIN):
        raise PermissionDenied("only operators cancel other people's print jobs")
    if job.status is FabricationStatus.PREPARING:
        started = job.origin_command_id is not None
        aborted = fabrication_records.advance_fabrication_job(
            uow, job_id, FabricationStatus.ABORTED, now=now, reason="cancelled"
        )
        if started:
            _cancel_on_printer(uow, jobs, aborted, by, now)
        return aborted
    if job.status not in (FabricationStatus.PRINTING, FabricationStatus.PAUSED):
        raise Conflict(f"the job is {job.status.value}; there is nothing to cancel")
    printer = uow.get(Device, job.device_id)
    if printer is not None and printer.online_state is OnlineState.OFFLINE:
        return fabrication_records.advance_fabrication_job(
            uow,
            job_id,
            FabricationStatus.ABORTED,
            now=now,
            reason=f"cancelled while {printer.display_name} was offline: nothing was sent to "
            "it. Check the printer (it may still hold the part, or even be printing it) "
            "before confirming the bed clear",
        )
    request_command(
        uow,
        jobs=jobs,
        device_id=job.device_id,
        intent="print_cancel",
        payload={},
        requester=by,
        for_job=job_id,
        correlation_id=f"cancel-job:{job_id}",
        now=now,
    )
    return job


def _cancel_on_printer(
    uow: UnitOfWork, jobs: JobQueue, job: FabricationJob, by: Principal, now: datetime
) -> None:
    """A job aborted while its start was on the way: cancel whatever the printer began.
    Best effort — a printer that never started refuses, which is what we want."""
    try:
        with uow.begin_nested():
            request_command(
                uow,
                jobs=jobs,
                device_id=job.device_id,
                intent="print_cancel",
                payload={},
                requester=by,
                for_job=job.id,
                correlation_id=f"cancel-job:{job.id}",
                now=now,
            )
    except KittyLabError:
        return


@dataclass(frozen=True)
class ActiveJob:
    id: UUID
    device_id: UUID
    status: FabricationStatus
    stage: str | None
    command_status: str | None
    command_failure: str | None


def active_jobs(database: Database) -> list[ActiveJob]:
    """Jobs a tracker must follow: starting, printing or paused."""
    with database.unit_of_work() as session:
        rows = session.execute(
            select(FabricationJob, DeviceCommand.status, DeviceCommand.failure_reason)
            .outerjoin(DeviceCommand, DeviceCommand.id == FabricationJob.origin_command_id)
            .where(
                FabricationJob.status.in_(
                    [
                        FabricationStatus.PREPARING,
                        FabricationStatus.PRINTING,
                        FabricationStatus.PAUSED,
                    ]
                )
            )
        ).all()
        active: list[ActiveJob] = []
        for job, status, failure in rows:
            stage = job_details.read(job).stage
            if job.status is FabricationStatus.PREPARING and stage is not Stage.STARTING:
                continue
            active.append(
                ActiveJob(
                    id=job.id,
                    device_id=job.device_id,
                    status=job.status,
                    stage=stage,
                    command_status=status.value if status is not None else None,
                    command_failure=failure,
                )
            )
        return active


FollowUp = Callable[[UnitOfWork, FabricationJob, FabricationStatus], None]
"""Runs in the transaction that moved the job (``FabricationJob`` already in its new
status; the status it left): its records commit with the move or not at all, and what
must happen once they are committed (a scene's dispatch, a notification's delivery, the
queue's next look) it registers on the unit of work."""


def apply_printer_state(
    database: Database,
    job: ActiveJob,
    state: Mapping[str, Any] | None,
    now: datetime,
    *,
    record_state: bool = False,
    lost_after: timedelta | None = None,
    unreadable: str | None = None,
    follow_up: FollowUp | None = None,
) -> FabricationStatus | None:
    """Move ``job`` as its printer's ``state`` says; returns the new status, if any.
    ``follow_up`` records what the move entails in the same transaction (a scene's
    commands, the end-of-job notification): a crash can lose neither the move nor what it
    entails without the other. The progress the printer reports is kept on the job.

    ``state`` None means the printer could not be read (``unreadable`` says why) or is
    offline: the first such round is noted on the job, and once it has lasted
    ``lost_after`` the job fails (``print_queue.lost_printer``), so a printer that went
    away never holds its queue forever. A state read again clears the note.

    With ``record_state`` (a printer that is polled, not one that reports itself), a
    state that moves the job is also stored as the printer's ``state`` telemetry, in the
    same transaction. Commands are checked against that last known state: without it, a
    job just moved to printing would meet a printer the records still call idle until the
    poller's next round, and a failure's pause (or a cancel) would be refused."""
    update = follow_printer(job.status, job.stage, job.command_status, job.command_failure, state)
    with database.unit_of_work() as session:
        row = session.get(FabricationJob, job.id, with_for_update=True)
        if row is None or row.status is not job.status:
            return None  # changed meanwhile: the next round sees the new status
        details = job_details.read(row)
        if state is None and lost_after is not None:
            update = _unreadable(row, job, now, lost_after, unreadable)
        elif state is not None and details.printer_unreadable_since is not None:
            details = job_details.write(row, replace(details, printer_unreadable_since=None))
        if state and "progress" in state and row.status is not FabricationStatus.PREPARING:
            progress = state.get("progress")
            job_details.write(
                row,
                replace(
                    details,
                    progress=float(progress)
                    if isinstance(progress, int | float) and not isinstance(progress, bool)
                    else None,
                ),
            )
        if update.target is None:
            return None
        fabrication_records.advance_fabrication_job(
            session, job.id, update.target, now=now, reason=update.reason
        )
        if record_state and state is not None:
            telemetry.store_stream(
                session,
                [telemetry.IncomingEvent(job.device_id, None, telemetry.STATE_TOPIC, state, None)],
                now,
            )
        if update.target is FabricationStatus.PRINTING:
            details = job_details.read(row)
            if details.stage is not None:
                job_details.write(row, replace(details, stage=None))
        if follow_up is not None:
            follow_up(session, row, job.status)
        return update.target


def _unreadable(
    row: FabricationJob, job: ActiveJob, now: datetime, limit: timedelta, why: str | None
) -> JobUpdate:
    """Note (once) that the job's printer stopped answering; fail the job once that has
    lasted ``limit``."""
    if not following_printer(job.status, job.stage, job.command_status):
        return JobUpdate(None)
    details = job_details.read(row)
    stamp = details.printer_unreadable_since
    if stamp is None:
        job_details.write(row, replace(details, printer_unreadable_since=now))
        return JobUpdate(None)
    return lost_printer(
        job.status,
        job.stage,
        job.command_status,
        stamp,
        now,
        limit,
        why,
    )
