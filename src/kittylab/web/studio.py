"""What the CAD studio shows (issue 18), read in one short transaction each: a CAD job with
its progress and each planned provider's result side by side (score and breakdown,
bounding box against the request, thinnest wall, the printers it fits, its files), the
job's lineage (the first prompt, its iterations, the prints made from their parts and
their outcomes), and the newest jobs.

A provider's state on a job is read from the records: ``done`` once its artifacts are
stored (each provider's are recorded in one transaction), ``building`` while the job's
``currentProvider`` names it, ``waiting`` before that; once the job has finished, its
recorded attempts say ``failed``, ``unavailable``, ``busy`` or ``refused`` (with the
error), and a provider a job never needed to try (it stops at the first success unless
it compares) is ``not needed``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    CADArtifact,
    CADJob,
    Device,
    FabricationJob,
    PrintMonitorEvent,
    User,
)
from kittylab.cad import job_details
from kittylab.cad.fit import Bed, PrinterFit, printers_fit
from kittylab.cad.job_details import Attempt, TargetPrinter
from kittylab.domain.enums import ArtifactType, CADJobStatus, FabricationStatus
from kittylab.domain.errors import NotFound
from kittylab.fabrication import job_details as fabrication_details

RECENT_JOBS = 12
FOLLOW_UP_MARK = " — then: "
"""How ``CadService.iterate`` writes a follow-up into the child job's prompt."""
FINISHED = (CADJobStatus.COMPLETED, CADJobStatus.FAILED)
PRINT_OUTCOMES = (FabricationStatus.COMPLETED, FabricationStatus.FAILED, FabricationStatus.ABORTED)


@dataclass(frozen=True)
class FileLink:
    id: UUID
    kind: str
    url: str
    size_bytes: int | None


@dataclass(frozen=True)
class ProviderResult:
    provider: str
    state: str
    """``waiting``, ``building``, ``done``, ``failed``, ``unavailable``, ``busy``,
    ``refused`` or ``not needed``."""
    error: str | None = None
    seconds: float | None = None
    score: float | None = None
    components: Mapping[str, float] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    watertight: bool | None = None
    manifold: bool | None = None
    bbox: tuple[float, float, float] | None = None
    expected: tuple[float, float, float] | None = None
    max_deviation_mm: float | None = None
    within_tolerance: bool | None = None
    min_wall_mm: float | None = None
    min_wall_source: str | None = None
    min_wall_ok: bool | None = None
    overhang_share: float | None = None
    fits_bed: bool | None = None
    scored_bed: str | None = None
    printers: tuple[PrinterFit, ...] = ()
    model_version: str | None = None
    materials: tuple[str, ...] = ()
    stl: FileLink | None = None
    step: FileLink | None = None
    preview: FileLink | None = None
    files: tuple[FileLink, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state not in ("waiting", "building")

    @property
    def fitting_printers(self) -> list[PrinterFit]:
        return [p for p in self.printers if p.fits]


@dataclass(frozen=True)
class JobView:
    id: UUID
    prompt: str
    follow_up: str | None
    """The follow-up that made this job from its parent ("make it 5 mm taller")."""
    status: CADJobStatus
    policy_mode: str
    requested_by: str | None
    created_at: datetime
    completed_at: datetime | None
    error: str | None
    family: str | None
    params: Mapping[str, float]
    defaults: tuple[str, ...]
    expected: tuple[float, float, float] | None
    planned: tuple[str, ...]
    compare: bool
    target_printer: TargetPrinter | None
    current_provider: str | None
    parent_id: UUID | None
    results: tuple[ProviderResult, ...]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def done_count(self) -> int:
        return sum(1 for r in self.results if r.finished)

    @property
    def progress(self) -> float | None:
        """Providers finished of those the job runs; None (unknown) for a job that stops
        at the first success while it runs."""
        if self.finished:
            return 1.0
        if not self.compare or not self.results:
            return None
        return self.done_count / len(self.results)

    @property
    def best(self) -> ProviderResult | None:
        scored = [r for r in self.results if r.score is not None]
        return max(scored, key=lambda r: r.score or 0.0) if scored else None

    def elapsed_seconds(self, now: datetime) -> float:
        end = self.completed_at or now
        return max(0.0, (end - self.created_at).total_seconds())


@dataclass(frozen=True)
class PrintLink:
    id: UUID
    printer: str
    provider: str
    status: FabricationStatus
    created_at: datetime
    completed_at: datetime | None
    reason: str | None
    events: tuple[str, ...]
    """Its monitor events' types, oldest first."""
    stage: str | None = None
    """While ``preparing``: ``slicing``, ``queued`` or ``starting``."""

    @property
    def outcome(self) -> str | None:
        return self.status.value if self.status in PRINT_OUTCOMES else None

    @property
    def words(self) -> str:
        """The prints page's words: the stage while preparing, else the status."""
        if self.status is FabricationStatus.PREPARING and self.stage:
            return self.stage
        return self.status.value


@dataclass(frozen=True)
class LineageStep:
    id: UUID
    words: str
    """The first prompt, or the follow-up that made the iteration."""
    status: CADJobStatus
    best_score: float | None
    created_at: datetime
    prints: tuple[PrintLink, ...]
    current: bool


@dataclass(frozen=True)
class Lineage:
    steps: tuple[LineageStep, ...]
    """From the first prompt to this job."""
    children: tuple[LineageStep, ...]
    """Iterations made from this job."""


@dataclass(frozen=True)
class RecentJob:
    id: UUID
    words: str
    status: CADJobStatus
    family: str | None
    requested_by: str | None
    created_at: datetime
    best_score: float | None
    iteration: bool


def follow_up_of(job: CADJob) -> str | None:
    if job.parent_job_id is None or FOLLOW_UP_MARK not in job.prompt:
        return None
    return job.prompt.rsplit(FOLLOW_UP_MARK, 1)[1]


def _triple(value: Any) -> tuple[float, float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 3:
        return (float(value[0]), float(value[1]), float(value[2]))
    return None


def _file(artifact: CADArtifact) -> FileLink:
    size = artifact.metadata_.get("size_bytes")
    return FileLink(
        artifact.id,
        artifact.artifact_type.value,
        f"/api/cad/artifacts/{artifact.id}/download",
        int(size) if isinstance(size, int) else None,
    )


def _done(
    provider: str, artifacts: Sequence[CADArtifact], beds: Sequence[Bed], attempt: Attempt | None
) -> ProviderResult:
    by_type = {a.artifact_type: a for a in artifacts}
    first = artifacts[0]
    meta = first.metadata_
    quality: Mapping[str, Any] = meta.get("quality") or {}
    box = meta.get("bounding_box") or {}
    bbox = (float(box["x"]), float(box["y"]), float(box["z"])) if "x" in box else None
    bbox_check: Mapping[str, Any] = quality.get("bounding_box") or {}
    printing: Mapping[str, Any] = quality.get("printability") or {}
    mesh: Mapping[str, Any] = quality.get("mesh") or {}
    files = tuple(
        _file(by_type[t])
        for t in (ArtifactType.STEP, ArtifactType.STL, ArtifactType.OBJ, ArtifactType.DXF)
        if t in by_type
    )
    stl = by_type.get(ArtifactType.STL)
    step = by_type.get(ArtifactType.STEP)
    preview = by_type.get(ArtifactType.PREVIEW)
    wall = printing.get("min_wall_mm")
    deviation = bbox_check.get("max_deviation_mm")
    overhang = printing.get("overhang_share")
    seconds = attempt.seconds if attempt is not None else None
    return ProviderResult(
        provider=provider,
        state="done",
        seconds=seconds,
        score=first.quality_score,
        components=dict(quality.get("components") or {}),
        weights=dict(quality.get("weights") or {}),
        watertight=mesh.get("watertight"),
        manifold=mesh.get("manifold"),
        bbox=bbox,
        expected=_triple(box.get("expected")),
        max_deviation_mm=float(deviation) if deviation is not None else None,
        within_tolerance=bbox_check.get("within_tolerance"),
        min_wall_mm=float(wall) if wall is not None else None,
        min_wall_source=printing.get("min_wall_source"),
        min_wall_ok=printing.get("min_wall_ok"),
        overhang_share=float(overhang) if overhang is not None else None,
        fits_bed=printing.get("fits_bed"),
        scored_bed=printing.get("bed_source"),
        printers=tuple(printers_fit(bbox, beds)) if bbox is not None else (),
        model_version=meta.get("model_version"),
        materials=tuple(meta.get("material_hints") or ()),
        stl=_file(stl) if stl is not None else None,
        step=_file(step) if step is not None else None,
        preview=_file(preview) if preview is not None else None,
        files=files,
    )


def _results(
    job: CADJob, artifacts: Sequence[CADArtifact], beds: Sequence[Bed]
) -> tuple[ProviderResult, ...]:
    details = job_details.read(job)
    planned = list(details.planned_providers)
    by_provider: dict[str, list[CADArtifact]] = {}
    for artifact in artifacts:
        by_provider.setdefault(artifact.provider.value, []).append(artifact)
    # The last attempt of each provider counts.
    attempts = {attempt.provider: attempt for attempt in details.attempts or ()}
    current = details.current_provider
    results = []
    for provider in [*planned, *(p for p in by_provider if p not in planned)]:
        attempt = attempts.get(provider)
        if provider in by_provider:
            results.append(_done(provider, by_provider[provider], beds, attempt))
        elif job.status in FINISHED:
            outcome = (attempt.outcome if attempt else None) or "not needed"
            error = attempt.error if attempt else None
            results.append(ProviderResult(provider, outcome, error=error or None))
        elif job.status is CADJobStatus.RUNNING and current == provider:
            results.append(ProviderResult(provider, "building"))
        else:
            results.append(ProviderResult(provider, "waiting"))
    return tuple(results)


def _names(session: Session, ids: set[UUID]) -> dict[UUID, str]:
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.display_name).where(User.id.in_(list(ids))))
    return {user_id: name for user_id, name in rows}


def read_job(session: Session, job_id: UUID, beds: Sequence[Bed]) -> JobView:
    """The job with each provider's result; ``NotFound`` for an unknown job."""
    job = session.get(CADJob, job_id)
    if job is None:
        raise NotFound("CAD job", job_id)
    artifacts = session.scalars(
        select(CADArtifact)
        .where(CADArtifact.cad_job_id == job_id)
        .order_by(CADArtifact.created_at, CADArtifact.artifact_key)
    ).all()
    details = job_details.read(job)
    spec = details.spec or {}
    names = _names(session, {job.requested_by} if job.requested_by else set())
    return JobView(
        id=job.id,
        prompt=job.prompt,
        follow_up=follow_up_of(job),
        status=job.status,
        policy_mode=details.requested_policy or job.policy_mode.value,
        requested_by=names.get(job.requested_by) if job.requested_by else None,
        created_at=job.created_at,
        completed_at=job.completed_at,
        error=job.error,
        family=spec.get("family"),
        params=dict(spec.get("params") or {}),
        defaults=tuple(spec.get("defaults") or ()),
        expected=details.expected_bbox,
        planned=details.planned_providers,
        compare=bool(details.compare),
        target_printer=details.target_printer,
        current_provider=details.current_provider,
        parent_id=job.parent_job_id,
        results=_results(job, artifacts, beds),
    )


def _best_scores(session: Session, job_ids: Sequence[UUID]) -> dict[UUID, float]:
    if not job_ids:
        return {}
    rows = session.execute(
        select(CADArtifact.cad_job_id, func.max(CADArtifact.quality_score))
        .where(CADArtifact.cad_job_id.in_(list(job_ids)))
        .group_by(CADArtifact.cad_job_id)
    )
    return {job_id: float(score) for job_id, score in rows if score is not None}


def _prints(session: Session, job_ids: Sequence[UUID]) -> dict[UUID, list[PrintLink]]:
    """The prints made from the parts of ``job_ids``, by CAD job, oldest first."""
    found: dict[UUID, list[PrintLink]] = {j: [] for j in job_ids}
    if not job_ids:
        return found
    rows = session.execute(
        select(FabricationJob, CADArtifact.cad_job_id, CADArtifact.provider, Device.display_name)
        .join(CADArtifact, CADArtifact.id == FabricationJob.cad_artifact_id)
        .join(Device, Device.id == FabricationJob.device_id)
        .where(CADArtifact.cad_job_id.in_(list(job_ids)))
        .order_by(FabricationJob.created_at)
    ).all()
    events: dict[UUID, list[str]] = {row[0].id: [] for row in rows}
    if events:
        for fabrication_id, event_type in session.execute(
            select(PrintMonitorEvent.fabrication_job_id, PrintMonitorEvent.event_type)
            .where(PrintMonitorEvent.fabrication_job_id.in_(list(events)))
            .order_by(PrintMonitorEvent.occurred_at)
        ):
            events[fabrication_id].append(event_type.value)
    for fabrication, cad_job_id, provider, printer in rows:
        print_details = fabrication_details.read(fabrication)
        found[cad_job_id].append(
            PrintLink(
                id=fabrication.id,
                printer=printer,
                provider=provider.value,
                status=fabrication.status,
                created_at=fabrication.created_at,
                completed_at=fabrication.completed_at,
                reason=print_details.reason,
                events=tuple(events[fabrication.id]),
                stage=print_details.stage,
            )
        )
    return found


MAX_CHAIN = 50
"""Iterations followed back at most (a chain is never a loop, but a bound costs nothing)."""


def read_lineage(session: Session, job_id: UUID) -> Lineage:
    """The prompt and iterations that led to ``job_id`` (oldest first), the iterations made
    from it, and the prints of each one's parts with their outcomes."""
    chain: list[CADJob] = []
    job = session.get(CADJob, job_id)
    seen: set[UUID] = set()
    while job is not None and job.id not in seen and len(chain) < MAX_CHAIN:
        seen.add(job.id)
        chain.append(job)
        job = session.get(CADJob, job.parent_job_id) if job.parent_job_id else None
    chain.reverse()
    children = session.scalars(
        select(CADJob).where(CADJob.parent_job_id == job_id).order_by(CADJob.created_at)
    ).all()
    ids = [j.id for j in chain] + [j.id for j in children]
    scores = _best_scores(session, ids)
    prints = _prints(session, ids)

    def step(job: CADJob) -> LineageStep:
        words = follow_up_of(job) or job.prompt
        return LineageStep(
            job.id,
            words,
            job.status,
            scores.get(job.id),
            job.created_at,
            tuple(prints[job.id]),
            job.id == job_id,
        )

    return Lineage(tuple(step(j) for j in chain), tuple(step(j) for j in children))


def recent_jobs(session: Session, limit: int = RECENT_JOBS) -> list[RecentJob]:
    """The newest CAD jobs (every CAD read is open to everyone, as in the API)."""
    jobs = session.scalars(
        select(CADJob).order_by(CADJob.created_at.desc(), CADJob.id).limit(limit)
    ).all()
    scores = _best_scores(session, [j.id for j in jobs])
    names = _names(session, {j.requested_by for j in jobs if j.requested_by})
    return [
        RecentJob(
            id=j.id,
            words=follow_up_of(j) or j.prompt,
            status=j.status,
            family=(job_details.read(j).spec or {}).get("family"),
            requested_by=names.get(j.requested_by) if j.requested_by else None,
            created_at=j.created_at,
            best_score=scores.get(j.id),
            iteration=j.parent_job_id is not None,
        )
        for j in jobs
    ]
