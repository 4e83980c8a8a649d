"""What the prints page shows, read in one short transaction (issue 17): each printer with
its live state, the job on it, its queue, its recent history with outcomes, and the
monitor events (with their snapshots) of those jobs; and each job's preview image.

A job's words are the API's: its ``status`` (``printing``, ``paused``, ``completed``…),
or while ``preparing`` its ``stage`` (``slicing``, ``queued``, ``starting``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    CADArtifact,
    CADJob,
    Device,
    FabricationJob,
    PrintMonitorEvent,
    User,
    Zone,
)
from kittylab.domain.enums import ArtifactType, DeviceKind, FabricationStatus, OnlineState
from kittylab.domain.gcode_thumbnails import Thumbnail, find_thumbnail
from kittylab.domain.print_queue import ACTIVE, FINISHED, Stage
from kittylab.fabrication import job_details
from kittylab.records.ports import ArtifactMissing, ArtifactStore
from kittylab.web.floor import detail_rows, latest_states

HISTORY_LENGTH = 8
CAD_CHOICES = 20
GCODE_HEAD_BYTES = 1024 * 1024
"""Slicers write their thumbnails at the top of the file: only this much is read."""
PRINTABLE_ARTIFACTS = (ArtifactType.STL, ArtifactType.STEP, ArtifactType.OBJ)


@dataclass(frozen=True)
class EventView:
    id: UUID
    event_type: str
    confidence: float
    occurred_at: datetime
    failure: bool
    severity: str | None
    snapshot_name: str | None
    """The snapshot's name under ``/api/fabrication/jobs/{job}/snapshots/``."""


@dataclass(frozen=True)
class JobView:
    id: UUID
    status: FabricationStatus
    stage: str | None
    file_name: str
    requested_by: UUID
    requester_name: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    reason: str | None
    bed_cleared: bool
    estimated_seconds: float | None
    from_cad: bool
    events: tuple[EventView, ...] = ()

    @property
    def words(self) -> str:
        if self.status is FabricationStatus.PREPARING and self.stage:
            return self.stage
        return self.status.value

    @property
    def running(self) -> bool:
        return self.status in ACTIVE

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class PrinterView:
    id: UUID
    name: str
    external_id: str
    zone: str
    online_state: OnlineState
    state: dict[str, Any] | None
    reported_at: datetime | None
    current: JobView | None = None
    queue: list[JobView] = field(default_factory=list)
    history: list[JobView] = field(default_factory=list)
    needs_bed_clear: bool = False
    """A printed job ended and nobody confirmed its part is off the bed: the queue waits."""

    @property
    def phase(self) -> str:
        if self.state and "state" in self.state:
            return str(self.state["state"])
        return "no report yet"

    @property
    def progress(self) -> float | None:
        value = (self.state or {}).get("progress")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return min(1.0, max(0.0, float(value)))
        return None

    @property
    def temperatures(self) -> list[tuple[str, str]]:
        return [row for row in detail_rows(DeviceKind.PRINTER, self.state) if row[0] != "file"]

    @property
    def file(self) -> str | None:
        value = (self.state or {}).get("file")
        return str(value) if value else None

    def seconds_left(self, now: datetime) -> float | None:
        """The printer's own estimate; else the pace so far; else the slicer's estimate."""
        left = (self.state or {}).get("seconds_left")
        if isinstance(left, int | float) and left >= 0:
            return float(left)
        progress, job = self.progress, self.current
        if job is None or job.status is not FabricationStatus.PRINTING or progress is None:
            return None
        if progress >= 0.02 and job.started_at is not None:
            elapsed = (now - job.started_at).total_seconds()
            return max(0.0, elapsed * (1 - progress) / progress)
        if job.estimated_seconds:
            return job.estimated_seconds * (1 - progress)
        return None


@dataclass(frozen=True)
class CadChoice:
    id: UUID
    label: str


def _file_name(job: FabricationJob) -> str:
    details = job_details.read(job)
    name = details.printer_file or details.source_name
    return str(name or job.gcode_path.rsplit("/", 1)[-1])


def _job_view(job: FabricationJob, names: dict[UUID, str], events: list[EventView]) -> JobView:
    details = job_details.read(job)
    reason = details.reason
    return JobView(
        id=job.id,
        status=job.status,
        stage=details.stage,
        file_name=_file_name(job),
        requested_by=job.requested_by,
        requester_name=names.get(job.requested_by, "?"),
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        reason=str(reason) if reason else None,
        bed_cleared=details.bed_cleared is not None,
        estimated_seconds=details.estimated_seconds,
        from_cad=job.cad_artifact_id is not None,
        events=tuple(events),
    )


def _event_view(event: PrintMonitorEvent) -> EventView:
    severity = event.details.get("severity")
    name = event.snapshot_key.rsplit("/", 1)[-1] if event.snapshot_key else None
    return EventView(
        id=event.id,
        event_type=event.event_type.value,
        confidence=event.confidence,
        occurred_at=event.occurred_at,
        failure=event.event_type.is_failure,
        severity=str(severity) if severity else None,
        snapshot_name=name,
    )


def read_printers(session: Session, device_id: UUID | None = None) -> list[PrinterView]:
    """Every printer (or just ``device_id``), with its jobs, in one transaction."""
    stmt = select(Device, Zone.name).join(Zone, Zone.id == Device.zone_id)
    stmt = stmt.where(Device.kind == DeviceKind.PRINTER, Device.retired_at.is_(None))
    if device_id is not None:
        stmt = stmt.where(Device.id == device_id)
    rows = session.execute(stmt.order_by(Zone.name, Device.display_name)).all()
    latest = latest_states(session, [d.id for d, _ in rows])
    printers = {}
    for device, zone in rows:
        state, reported_at = latest.get(device.id, (None, None))
        printers[device.id] = PrinterView(
            device.id, device.display_name, device.external_id, zone,
            device.online_state, state, reported_at,
        )  # fmt: skip
    if not printers:
        return []
    jobs = session.scalars(
        select(FabricationJob)
        .where(FabricationJob.device_id.in_(list(printers)))
        .order_by(FabricationJob.created_at, FabricationJob.id)
    ).all()
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    shown: dict[UUID, list[FabricationJob]] = {p: [] for p in printers}
    for job in jobs:
        shown[job.device_id].append(job)
    kept: list[FabricationJob] = []
    for printer_id, printer_jobs in shown.items():
        finished = sorted(
            (j for j in printer_jobs if j.status in FINISHED),
            key=lambda j: j.completed_at or j.created_at,
            reverse=True,
        )
        printers[printer_id].needs_bed_clear = any(
            (d := job_details.read(j)).bed_cleared is None
            and (j.started_at is not None or d.reached_printer)
            for j in finished
        )
        kept.extend(j for j in printer_jobs if j.status not in FINISHED)
        kept.extend(finished[:HISTORY_LENGTH])
    events: dict[UUID, list[EventView]] = {j.id: [] for j in kept}
    for event in session.scalars(
        select(PrintMonitorEvent)
        .where(PrintMonitorEvent.fabrication_job_id.in_(list(events)))
        .order_by(PrintMonitorEvent.occurred_at)
    ):
        events[event.fabrication_job_id].append(_event_view(event))
    for job in kept:
        view = _job_view(job, names, events[job.id])
        printer = printers[job.device_id]
        if view.finished:
            printer.history.append(view)
        elif view.running or view.stage == Stage.STARTING:
            printer.current = view
        else:
            printer.queue.append(view)
    for printer in printers.values():
        if printer.current is not None:
            printer.needs_bed_clear = False  # the part on the bed is the running job's
    return list(printers.values())


def cad_choices(session: Session) -> list[CadChoice]:
    """The newest printable CAD artifacts, for "print a CAD part"."""
    rows = session.execute(
        select(CADArtifact, CADJob.prompt)
        .join(CADJob, CADJob.id == CADArtifact.cad_job_id)
        .where(CADArtifact.artifact_type.in_(PRINTABLE_ARTIFACTS))
        .order_by(CADArtifact.created_at.desc())
        .limit(CAD_CHOICES)
    ).all()
    choices = []
    for artifact, prompt in rows:
        words = " ".join(str(prompt).split())
        words = words if len(words) <= 60 else words[:57] + "…"
        label = f"{words} · {artifact.provider.value} · {artifact.artifact_type.value.upper()}"
        choices.append(CadChoice(artifact.id, label))
    return choices


class Previews:
    """Each job's preview, found once: the G-code's embedded thumbnail, else the preview
    PNG of the CAD artifact the job came from; None when there is neither."""

    MAX_ENTRIES = 256

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store
        self._found: OrderedDict[tuple[UUID, str], Thumbnail | None] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, session: Session, job_id: UUID) -> Thumbnail | None:
        job = session.get(FabricationJob, job_id)
        if job is None:
            return None
        key = (job.id, job.gcode_path)
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return self._found[key]
        gcode_ready = self._exists(job.gcode_path)
        found = self._from_gcode(job.gcode_path) if gcode_ready else None
        if found is None and job.cad_artifact_id is not None:
            found = self._from_cad(session, job.cad_artifact_id)
        if gcode_ready or found is not None:  # a model still slicing may get one later
            with self._lock:
                self._found[key] = found
                while len(self._found) > self.MAX_ENTRIES:
                    self._found.popitem(last=False)
        return found

    def _exists(self, key: str) -> bool:
        if key.startswith("printer:"):
            return False  # on the printer's own storage: nothing here to read
        try:
            return self._store.exists(key)
        except ValueError:
            return False

    def _from_gcode(self, key: str) -> Thumbnail | None:
        head = bytearray()
        try:
            for chunk in self._store.read_chunks(key):
                head.extend(chunk)
                if len(head) >= GCODE_HEAD_BYTES:
                    break
        except ArtifactMissing:
            return None
        return find_thumbnail(head[:GCODE_HEAD_BYTES].decode("utf-8", "replace").splitlines())

    def _from_cad(self, session: Session, artifact_id: UUID) -> Thumbnail | None:
        artifact = session.get(CADArtifact, artifact_id)
        if artifact is None:
            return None
        preview = session.scalars(
            select(CADArtifact).where(
                CADArtifact.cad_job_id == artifact.cad_job_id,
                CADArtifact.provider == artifact.provider,
                CADArtifact.artifact_type == ArtifactType.PREVIEW,
            )
        ).first()
        if preview is None:
            return None
        try:
            data = b"".join(self._store.read_chunks(preview.artifact_key))
        except ArtifactMissing:
            return None
        return Thumbnail("image/png", 0, 0, data)
