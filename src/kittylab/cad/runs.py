"""CAD generation: prompt → providers → scored artifacts in the store → records.

``CadService.generate`` reads the prompt (``kittylab.domain.cad_prompt``), plans which
providers to try for the policy, records a ``queued`` job and then:

- ``offline`` (and ``auto`` when no online provider is available): runs the job before
  returning — the offline pipeline must succeed before the caller gets an answer; when it
  fails an operator is alerted and ``CadGenerationFailed`` is raised;
- ``online`` and ``auto`` with an online provider: defers the job to a background worker
  and returns at once.

``run_job`` tries the planned providers in order until one succeeds (``auto``: online
providers first, then offline ones) — or, for a ``compare`` job, runs every one of them and
keeps each success side by side — recording every attempt and fallback on the job's
``details`` and in the metrics. A request may name the providers to use (``providers``).
Each output file is scored (``ArtifactAnalyzer``), stored under ``cad/<job>/<provider>/…``
and recorded as a ``CADArtifact`` with its bounding box, material hints, generation
parameters and the provider's model version.

No database transaction is held while a provider works.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from prometheus_client import Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    CADArtifact,
    CADJob,
    Device,
    FabricationJob,
    PrintMonitorEvent,
    User,
)
from kittylab.cad import records as cad_records
from kittylab.domain.cad_prompt import (
    MAX_PROMPT_CHARS,
    UnknownPart,
    apply_follow_up,
    check_prompt_text,
    parse_prompt,
)
from kittylab.domain.cad_spec import Family, PartSpec, expected_bbox
from kittylab.domain.enums import (
    ArtifactType,
    CADJobStatus,
    CADPolicyMode,
    CADProvider,
    DeviceKind,
    NotificationChannel,
    Role,
)
from kittylab.domain.errors import (
    Busy,
    Conflict,
    InfrastructureError,
    NotFound,
    ValidationFailed,
)
from kittylab.domain.sanitize import sanitize_text
from kittylab.fabrication.ports import BuildVolume
from kittylab.records import notifications
from kittylab.records.ports import ArtifactStore

logger = logging.getLogger(__name__)

CAD_ATTEMPTS = Counter(
    "kittylab_cad_provider_attempts_total",
    "CAD provider attempts by provider and outcome.",
    ["provider", "outcome"],
)
CAD_FALLBACKS = Counter(
    "kittylab_cad_fallbacks_total",
    "A CAD job moved on from a failed or unavailable provider to the next one.",
    ["from_provider", "to_provider"],
)
CAD_SECONDS = Histogram(
    "kittylab_cad_generation_seconds",
    "Time a provider took to produce its files, by provider.",
    ["provider"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300),
)


BUSY_REASON = "every CAD worker was busy"
MAX_RUNS = 3
"""Runs a job gets: a job whose process died this many times is failed, not run again."""
QUEUED_GRACE = timedelta(minutes=1)
"""A ``queued`` job younger than this may still have its background job on the way."""


class PolicyMode(StrEnum):
    """What the caller asks for; ``auto`` is stored as ``online`` with the request noted."""

    ONLINE = "online"
    OFFLINE = "offline"
    AUTO = "auto"


class CadGenerationFailed(InfrastructureError):
    """Every planned provider failed. ``attempts`` says what each one answered; ``alerts``
    how many operator alerts were queued (0: nobody could be alerted)."""

    def __init__(
        self,
        job_id: UUID,
        attempts: Sequence[Mapping[str, Any]],
        *,
        reason: str | None = None,
        alerts: int = 0,
    ) -> None:
        tried = "; ".join(f"{a['provider']}: {a.get('error', a['outcome'])}" for a in attempts)
        super().__init__(f"CAD job {job_id} failed ({reason or tried or 'no provider ran'})")
        self.job_id = job_id
        self.attempts = list(attempts)
        self.alerts = alerts


class CadBusy(Busy):
    """The job's providers were all busy or unavailable (none failed): nothing was built,
    the job is failed without alerting anyone, and a new request may succeed later."""

    def __init__(self, job_id: UUID, retry_after_seconds: float) -> None:
        super().__init__(
            f"CAD job {job_id} was not built: the CAD workers are all busy; retry shortly",
            retry_after_seconds,
        )
        self.job_id = job_id


class ProviderUnavailable(InfrastructureError):
    """The provider cannot be used now (not installed, not configured, unreachable)."""


@dataclass(frozen=True)
class ProviderRequest:
    prompt: str
    spec: PartSpec | None
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderOutput:
    """Files a provider produced (at least an STL or another mesh for scoring)."""

    files: Mapping[ArtifactType, Path]
    model_version: str
    solid_valid: bool | None = None
    parametric: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


class CadProviderPort(Protocol):
    name: CADProvider
    offline: bool

    def unavailable_reason(self) -> str | None:
        """None when usable now, else why not (shown to callers and recorded)."""

    def needs_spec(self) -> bool:
        """True when the provider builds from a part specification, not free text."""

    def needs_image(self) -> bool:
        """True when the provider works from a reference image (``image_references``)."""

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        """Produce the files in ``work_dir`` or raise (any ``KittyLabError``)."""


@dataclass(frozen=True)
class Quality:
    score: float
    breakdown: dict[str, Any]
    bbox: tuple[float, float, float]


@dataclass(frozen=True)
class TargetBed:
    """The build volume a part's fit is checked against, and where it came from."""

    mm: tuple[float, float, float]
    source: str


class ArtifactAnalyzer(Protocol):
    def score(
        self,
        mesh: Path,
        *,
        expected_bbox: Sequence[float] | None,
        solid_valid: bool | None,
        parametric: bool,
        min_wall_mm: float | None,
        bed: TargetBed | None = None,
    ) -> Quality:
        """Score the mesh; ``bed`` None: the configured default bed; ``min_wall_mm`` None:
        measured on the mesh."""

    def preview(self, mesh: Path) -> bytes: ...

    def check_step(self, step: Path) -> bool | None:
        """Whether every solid in the STEP file is valid; None when it cannot be checked."""


class BuildVolumes(Protocol):
    """Printer profiles' build volumes (the slicer's ``build_volume``)."""

    def build_volume(self, printer: str) -> BuildVolume: ...


class CadJobQueue(Protocol):
    def defer_cad_job(self, job_id: UUID) -> None: ...


class AlertQueue(Protocol):
    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None: ...


@dataclass(frozen=True)
class AlertSettings:
    channel: NotificationChannel = NotificationChannel.EMAIL
    recipients: tuple[str, ...] = ()
    """Empty: every active operator or admin with an email address."""


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    policy_mode: PolicyMode
    requested_by: UUID | None
    conversation_id: UUID | None = None
    references: tuple[str, ...] = ()
    parent_job_id: UUID | None = None
    spec: PartSpec | None = None
    """Given by ``iterate``: the follow-up's spec, already derived from the parent's."""
    providers: tuple[str, ...] = ()
    """Only these providers, in this order (empty: every one the policy allows)."""
    compare: bool = False
    """Run every planned provider and keep each one's artifacts (side by side in
    ``compare``), instead of stopping at the first that succeeds."""
    printer_id: UUID | None = None
    """The printer the part is meant for: its bed is the one the fit is scored against."""


@dataclass(frozen=True)
class StrandedJobs:
    """What ``recover_stranded`` found: jobs to run (again) in the background, and jobs
    failed because their runs kept dying."""

    resume: list[UUID]
    abandoned: list[UUID]


@dataclass(frozen=True)
class _Run:
    """A job being run: what it asks for, and the providers whose artifacts an earlier
    run of it already recorded."""

    details: dict[str, Any]
    prompt: str
    recorded: list[str]
    runs: int
    """This run included."""


@dataclass(frozen=True)
class GenerateResult:
    job: CADJob
    artifacts: list[CADArtifact]
    providers: list[str]


_CONTENT_TYPES = {
    ArtifactType.STEP: ("step", "model/step"),
    ArtifactType.STL: ("stl", "model/stl"),
    ArtifactType.OBJ: ("obj", "model/obj"),
    ArtifactType.DXF: ("dxf", "image/vnd.dxf"),
    ArtifactType.PREVIEW: ("png", "image/png"),
}
_MESH_TYPES = (ArtifactType.STL, ArtifactType.OBJ)


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def image_references(references: Sequence[str]) -> list[str]:
    """References naming a picture in the artifact store (not URLs, not server paths)."""
    return [r for r in references if r.lower().endswith(_IMAGE_SUFFIXES) and "://" not in r]


def content_type(artifact_type: ArtifactType) -> str:
    return _CONTENT_TYPES[artifact_type][1]


def material_hints(spec: PartSpec | None) -> tuple[list[str], str]:
    """A first material suggestion from the family, and why; the operator decides."""
    if spec is None:
        return ["PLA"], "no specification: a general-purpose default"
    if spec.family in (Family.SPUR_GEAR, Family.HOOK, Family.L_BRACKET, Family.SPACER):
        return ["PETG", "PA12"], "a loaded part: tougher than PLA"
    if spec.family is Family.ENCLOSURE:
        return ["PETG", "ABS"], "enclosures may sit near warm electronics"
    return ["PLA", "PETG"], "a general-purpose part"


def min_wall(spec: PartSpec | None) -> float | None:
    """The thinnest wall the specification asks for, for the printability check; None
    when it cannot say (no spec, a rod, a gear, whose teeth are its thinnest parts), and
    the analyzer measures the mesh instead."""
    if spec is None or spec.family is Family.SPUR_GEAR:
        return None
    p = spec.params
    candidates = [p[name] for name in ("thickness", "wall") if name in p]
    if "outer_diameter" in p and p.get("inner_diameter", 0) > 0:
        candidates.append((p["outer_diameter"] - p["inner_diameter"]) / 2)
    return min(candidates) if candidates else None


class CadService:
    def __init__(
        self,
        database: Database,
        store: ArtifactStore,
        providers: Sequence[CadProviderPort],
        analyzer: ArtifactAnalyzer,
        *,
        queue: CadJobQueue | None,
        alerts: AlertQueue | None,
        alert_settings: AlertSettings,
        clock: Callable[[], datetime],
        work_root: Path | None = None,
        recover_after: timedelta = timedelta(minutes=30),
        build_volumes: BuildVolumes | None = None,
    ) -> None:
        self.database = database
        self.store = store
        self.providers = list(providers)
        self.analyzer = analyzer
        self.queue = queue
        self.alerts = alerts
        self.alert_settings = alert_settings
        self.clock = clock
        self.work_root = work_root
        self.recover_after = recover_after
        self.build_volumes = build_volumes

    # --- planning -------------------------------------------------------------------

    def provider_status(self) -> list[dict[str, Any]]:
        """Every provider with whether it is offline and why it is unavailable, if it is."""
        return [
            {
                "provider": p.name.value,
                "offline": p.offline,
                "available": p.unavailable_reason() is None,
                "reason": p.unavailable_reason(),
            }
            for p in self.providers
        ]

    def plan(
        self,
        mode: PolicyMode,
        *,
        have_spec: bool,
        have_image: bool = False,
        only: Sequence[str] = (),
    ) -> list[CadProviderPort]:
        """Providers to try, in order. ``Conflict`` (field ``policyMode``) when none can;
        with ``only`` (provider names), exactly those in that order, ``Conflict`` (field
        ``providers``) naming any the policy cannot use now."""
        if only:
            return self._plan_only(mode, only, have_spec=have_spec, have_image=have_image)
        usable = [
            p
            for p in self.providers
            if p.unavailable_reason() is None
            and (have_spec or not p.needs_spec())
            and (have_image or not p.needs_image())
        ]
        online = [p for p in usable if not p.offline]
        offline = [p for p in usable if p.offline]
        chosen = {
            PolicyMode.OFFLINE: offline,
            PolicyMode.ONLINE: online,
            PolicyMode.AUTO: online + offline,
        }[mode]
        if not chosen:
            what = {"offline": "offline", "online": "online", "auto": ""}[mode.value]
            reasons = "; ".join(
                f"{p.name.value}: {p.unavailable_reason()}"
                for p in self.providers
                if (mode is PolicyMode.AUTO or p.offline == (mode is PolicyMode.OFFLINE))
                and p.unavailable_reason() is not None
            )
            raise Conflict(
                f"no {what + ' ' if what else ''}CAD provider is available for this prompt"
                + (f" ({reasons})" if reasons else ""),
                field="policyMode",
            )
        return chosen

    def _plan_only(
        self, mode: PolicyMode, names: Sequence[str], *, have_spec: bool, have_image: bool
    ) -> list[CadProviderPort]:
        chosen: list[CadProviderPort] = []
        for name in dict.fromkeys(names):  # in the caller's order, each once
            provider = next((p for p in self.providers if p.name.value == name), None)
            if provider is None:
                why = "is not a provider of this lab"
            elif mode is PolicyMode.OFFLINE and not provider.offline:
                why = "is online, and the policy is offline"
            elif mode is PolicyMode.ONLINE and provider.offline:
                why = "is offline, and the policy is online"
            elif (reason := provider.unavailable_reason()) is not None:
                why = f"is unavailable: {reason}"
            elif provider.needs_spec() and not have_spec:
                why = "builds from the part library, which cannot read this prompt"
            elif provider.needs_image() and not have_image:
                why = "needs a reference image"
            else:
                chosen.append(provider)
                continue
            raise Conflict(f"{name} {why}", field="providers")
        return chosen

    def _target_printer(self, session: Session, printer_id: UUID) -> dict[str, Any]:
        """The printer's bed for the fit check: its ``bed_mm`` attribute ([x, y, z] mm),
        else its slicer profile's build volume, else the configured default (the analyzer
        uses it when ``bedMm`` is None). ``NotFound`` for an unknown device,
        ``ValidationFailed`` (field ``printerId``) for one that is not a printer or states
        a malformed bed."""
        device = session.get(Device, printer_id)
        if device is None:
            raise NotFound("printer", printer_id)
        if device.kind is not DeviceKind.PRINTER:
            raise ValidationFailed("printerId", f"{device.display_name} is not a printer")
        target: dict[str, Any] = {"deviceId": str(device.id), "name": device.display_name}
        attributes = device.attributes or {}
        stated = attributes.get("bed_mm")
        profile = attributes.get("slicer_profile")
        if stated is not None:
            if not (
                isinstance(stated, list)
                and len(stated) == 3
                and all(isinstance(v, int | float) and 0 < v <= 10_000 for v in stated)
            ):
                raise ValidationFailed(
                    "printerId",
                    f"{device.display_name}'s bed_mm attribute must be [x, y, z] in mm",
                )
            target.update(bedMm=[float(v) for v in stated], bedSource="printer bed_mm")
        elif isinstance(profile, str) and self.build_volumes is not None:
            try:
                volume = self.build_volumes.build_volume(profile)
            except (ValidationFailed, InfrastructureError) as exc:
                # A scoring aid, not a gate: score against the default and say why.
                target.update(bedMm=None, bedSource=f"settings (profile {profile}: {exc})")
            else:
                target.update(
                    bedMm=[volume.x, volume.y, volume.z], bedSource=f"slicer profile {profile}"
                )
        else:
            target.update(bedMm=None, bedSource="settings (the printer states no bed)")
        return target

    # --- use cases ------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> GenerateResult:
        """Record a job for ``request`` and run it (offline) or defer it (online, auto).

        Raises ``ValidationFailed`` for a prompt that cannot be read or describes an
        impossible part, ``Conflict`` when no provider can serve the policy, ``NotFound``
        for an unknown conversation or parent job, and (offline) ``CadGenerationFailed``
        after the job failed and an operator was alerted."""
        # Stored and sent to providers sanitized (secrets redacted, control characters gone);
        # the grammar reads the same text.
        prompt = sanitize_text(check_prompt_text(request.prompt), MAX_PROMPT_CHARS)
        spec = request.spec
        if spec is None:
            try:
                spec = parse_prompt(prompt)
            except UnknownPart:
                if request.policy_mode is PolicyMode.OFFLINE:
                    raise
                spec = None  # a text-to-CAD service may still understand it
        planned = self.plan(
            request.policy_mode,
            have_spec=spec is not None,
            have_image=bool(image_references(request.references)),
            only=request.providers,
        )
        details: dict[str, Any] = {
            "requestedPolicy": request.policy_mode.value,
            "plannedProviders": [p.name.value for p in planned],
            "compare": request.compare,
            "references": list(request.references),
            "attempts": [],
        }
        if spec is not None:
            details["spec"] = spec.to_json()
            details["expectedBoundingBox"] = list(expected_bbox(spec))
        with self.database.unit_of_work() as session:
            if request.printer_id is not None:
                details["targetPrinter"] = self._target_printer(session, request.printer_id)
            job = cad_records.create_cad_job(
                session,
                prompt=prompt,
                policy_mode=(
                    CADPolicyMode.OFFLINE
                    if request.policy_mode is PolicyMode.OFFLINE
                    else CADPolicyMode.ONLINE
                ),
                requested_by=request.requested_by,
                conversation_id=request.conversation_id,
                parent_job_id=request.parent_job_id,
                details=details,
                now=self.clock(),
            )
            job_id = job.id
        if request.policy_mode is PolicyMode.OFFLINE or all(p.offline for p in planned):
            # ``auto`` with no online provider available is the offline pipeline: it runs
            # now, like ``offline``, instead of waiting for a background worker.
            return self.run_job(job_id)
        if self.queue is None:
            raise InfrastructureError("no job queue is configured for online CAD jobs")
        try:
            self.queue.defer_cad_job(job_id)
        except InfrastructureError:
            # The job is committed: ``recover_stranded`` has it run once the queue is back.
            # Answering an error instead would invite a retry that builds (and pays for)
            # the part twice.
            logger.warning("CAD job %s not deferred; the recovery sweep will run it", job_id)
        with self.database.unit_of_work() as session:
            stored = _get_job(session, job_id)
            session.expunge(stored)
        return GenerateResult(stored, [], [p.name.value for p in planned])

    def iterate(
        self, job_id: UUID, follow_up: str, *, requested_by: UUID | None, mode: PolicyMode
    ) -> GenerateResult:
        """A new job from ``job_id``'s specification changed by ``follow_up`` ("make it
        5 mm taller"), linked to it as its parent."""
        with self.database.unit_of_work() as session:
            parent = _get_job(session, job_id)
            raw_spec = parent.details.get("spec")
            conversation_id = parent.conversation_id
            parent_prompt = parent.prompt
        if raw_spec is None:
            raise Conflict(
                "that job has no part specification to change; send a new prompt",
                field="followUp",
            )
        spec = apply_follow_up(PartSpec.from_json(raw_spec), follow_up)
        follow = check_prompt_text(follow_up)
        prompt = f"{parent_prompt} — then: {follow}"
        return self.generate(
            GenerateRequest(
                prompt=prompt[:2000],
                policy_mode=mode,
                requested_by=requested_by,
                conversation_id=conversation_id,
                parent_job_id=job_id,
                spec=spec,
            )
        )

    def run_job(self, job_id: UUID) -> GenerateResult:
        """Run a queued job through its planned providers (see the module docstring).

        Safe to call again for the same job: a finished job is answered from the records;
        a ``running`` one (its process died) is run again, and a provider whose artifacts
        that earlier run already recorded counts as succeeded instead of being rebuilt."""
        run = self._begin(job_id)
        if isinstance(run, GenerateResult):
            return run
        if run.runs > MAX_RUNS and not run.recorded:
            # Retried after each death of its process (a stalled background job): stop.
            gave_up = _abandoned(run.runs - 1)
            alerts = self._fail(job_id, list(run.details.get("attempts", [])), reason=gave_up)
            if alerts is None:
                return self._stored(job_id)
            raise CadGenerationFailed(job_id, [], reason=gave_up, alerts=alerts)
        details = run.details
        spec = PartSpec.from_json(details["spec"]) if details.get("spec") else None
        planned = [p for name in details["plannedProviders"] for p in self._by_name(name)]
        request = ProviderRequest(run.prompt, spec, tuple(details.get("references", ())))
        compare = bool(details.get("compare"))
        attempts: list[dict[str, Any]] = []
        # Each provider's artifacts are recorded in one transaction, so what an earlier run
        # of this job (one that died before finishing) recorded is complete: it counts as
        # that provider's success and is not built again.
        for name in run.recorded:
            attempts.append({"provider": name, "outcome": "succeeded", "recovered": True})
        if run.recorded and not compare:
            return self._finish(job_id, attempts, planned)
        for provider in planned:
            if provider.name.value in run.recorded:
                continue
            if attempts and attempts[-1]["outcome"] != "succeeded":
                CAD_FALLBACKS.labels(attempts[-1]["provider"], provider.name.value).inc()
            attempt: dict[str, Any] = {"provider": provider.name.value}
            attempts.append(attempt)
            reason = provider.unavailable_reason()
            if reason is not None:
                attempt.update(outcome="unavailable", error=reason)
                CAD_ATTEMPTS.labels(provider.name.value, "unavailable").inc()
                continue
            self._mark_progress(job_id, provider.name.value)
            started = time.perf_counter()
            work_dir = Path(tempfile.mkdtemp(prefix="kittylab-cad-", dir=self.work_root))
            try:
                output = provider.generate(request, work_dir)
                self._store(job_id, provider, output, spec, attempts, _bed(details))
            except Busy as exc:
                # Load, not a fault: the next provider may have room.
                attempt.update(outcome="busy", error=str(exc))
                attempt["retryAfter"] = exc.retry_after_seconds
                CAD_ATTEMPTS.labels(provider.name.value, "busy").inc()
                continue
            except Exception as exc:
                message = sanitize_text(f"{type(exc).__name__}: {exc}", 500)
                logger.warning("CAD provider %s failed: %s", provider.name.value, message)
                attempt.update(outcome="failed", error=message)
                attempt["seconds"] = round(time.perf_counter() - started, 3)
                CAD_ATTEMPTS.labels(provider.name.value, "failed").inc()
                continue
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
            elapsed = time.perf_counter() - started
            CAD_SECONDS.labels(provider.name.value).observe(elapsed)
            CAD_ATTEMPTS.labels(provider.name.value, "succeeded").inc()
            attempt.update(outcome="succeeded", seconds=round(elapsed, 3))
            if not compare:
                break
        if any(a["outcome"] == "succeeded" for a in attempts):
            return self._finish(job_id, attempts, planned)
        busy = [a for a in attempts if a["outcome"] == "busy"]
        if busy and not any(a["outcome"] == "failed" for a in attempts):
            if self._fail(job_id, attempts, reason=BUSY_REASON, alert=False) is None:
                return self._stored(job_id)
            raise CadBusy(job_id, max(float(a["retryAfter"]) for a in busy))
        alerts = self._fail(job_id, attempts)
        if alerts is None:
            return self._stored(job_id)  # another run of the job finished it meanwhile
        raise CadGenerationFailed(job_id, attempts, alerts=alerts)

    # --- steps ----------------------------------------------------------------------

    def _by_name(self, name: str) -> list[CadProviderPort]:
        return [p for p in self.providers if p.name.value == name]

    def _begin(self, job_id: UUID) -> _Run | GenerateResult:
        """Move the job to ``running`` (from ``queued``; a ``running`` one is being run
        again) and say what it holds; a finished job is answered as it is stored."""
        with self.database.unit_of_work() as session:
            job = _get_job(session, job_id)
            if job.status in (CADJobStatus.COMPLETED, CADJobStatus.FAILED):
                return self._result(session, job_id)
            if job.status is CADJobStatus.QUEUED:
                job = cad_records.advance_cad_job(
                    session, job_id, CADJobStatus.RUNNING, now=self.clock()
                )
            job.details = {
                **job.details,
                "runs": int(job.details.get("runs", 0)) + 1,
                "progressAt": self.clock().isoformat(),
            }
            recorded = session.scalars(
                select(CADArtifact.provider)
                .where(CADArtifact.cad_job_id == job_id)
                .distinct()
                .order_by(CADArtifact.provider)
            )
            return _Run(
                dict(job.details), job.prompt, [p.value for p in recorded], job.details["runs"]
            )

    def _mark_progress(self, job_id: UUID, provider: str) -> None:
        """Stamp the start of a provider attempt: ``recover_stranded`` measures from it."""
        with self.database.unit_of_work() as session:
            job = session.get(CADJob, job_id, with_for_update=True, populate_existing=True)
            if job is not None:
                job.details = {
                    **job.details,
                    "progressAt": self.clock().isoformat(),
                    "currentProvider": provider,
                }

    def _stored(self, job_id: UUID) -> GenerateResult:
        with self.database.unit_of_work() as session:
            return self._result(session, job_id)

    def _result(self, session: Session, job_id: UUID) -> GenerateResult:
        """The job and its artifacts as stored, detached from ``session``."""
        job, stored = self.job_with_artifacts(session, job_id)
        planned_names = list(job.details.get("plannedProviders", []))
        session.flush()
        session.expunge_all()
        return GenerateResult(job, stored, planned_names)

    def _store(
        self,
        job_id: UUID,
        provider: CadProviderPort,
        output: ProviderOutput,
        spec: PartSpec | None,
        attempts: list[dict[str, Any]],
        bed: TargetBed | None,
    ) -> list[UUID]:
        mesh = next((output.files[t] for t in _MESH_TYPES if t in output.files), None)
        if mesh is None:
            raise ValidationFailed("artifact", f"{provider.name.value} returned no mesh to score")
        expected = expected_bbox(spec) if spec is not None else None
        solid_valid = output.solid_valid
        if solid_valid is None and ArtifactType.STEP in output.files:
            # A STEP from a provider that does not check its own solids (Zoo).
            solid_valid = self.analyzer.check_step(output.files[ArtifactType.STEP])
        quality = self.analyzer.score(
            mesh,
            expected_bbox=expected,
            solid_valid=solid_valid,
            parametric=output.parametric,
            min_wall_mm=min_wall(spec),
            bed=bed,
        )
        files = dict(output.files)
        preview = mesh.parent / "preview.png"
        preview.write_bytes(self.analyzer.preview(mesh))
        files[ArtifactType.PREVIEW] = preview
        materials, material_reason = material_hints(spec)
        base_metadata: dict[str, Any] = {
            "bounding_box": {
                "x": round(quality.bbox[0], 4),
                "y": round(quality.bbox[1], 4),
                "z": round(quality.bbox[2], 4),
                "expected": list(expected) if expected is not None else None,
                "units": "mm",
            },
            "material_hints": materials,
            "material_reason": material_reason,
            "generation_params": {
                "spec": spec.to_json() if spec is not None else None,
                "defaults_used": list(spec.defaults) if spec is not None else [],
                "provider": provider.name.value,
            },
            "model_version": output.model_version,
            "quality": quality.breakdown,
            **dict(output.metadata),
        }
        stored: list[UUID] = []
        keys: list[str] = []
        try:
            self._record(job_id, provider, files, base_metadata, quality, stored, keys)
        except Exception:
            # No stored file without its record — but a key another run recorded is that
            # run's file, and stays.
            with self.database.unit_of_work() as session:
                recorded = set(
                    session.scalars(
                        select(CADArtifact.artifact_key).where(CADArtifact.artifact_key.in_(keys))
                    )
                )
            for key in keys:
                if key not in recorded:
                    self.store.delete(key)
            raise
        attempts[-1]["qualityScore"] = quality.score
        return stored

    def _record(
        self,
        job_id: UUID,
        provider: CadProviderPort,
        files: Mapping[ArtifactType, Path],
        base_metadata: Mapping[str, Any],
        quality: Quality,
        stored: list[UUID],
        keys: list[str],
    ) -> None:
        with self.database.unit_of_work() as session:
            for artifact_type, path in files.items():
                extension, mime = _CONTENT_TYPES[artifact_type]
                key = f"cad/{job_id}/{provider.name.value}/part.{extension}"
                if artifact_type is ArtifactType.PREVIEW:
                    key = f"cad/{job_id}/{provider.name.value}/preview.png"
                # Refused before the file is written, so another run's file is never
                # overwritten under its record.
                cad_records.check_artifact_key_free(session, key)
                keys.append(key)
                saved = self.store.put_file(key, path, content_type=mime)
                row = cad_records.add_cad_artifact(
                    session,
                    cad_job_id=job_id,
                    provider=provider.name,
                    artifact_key=key,
                    artifact_type=artifact_type,
                    metadata={
                        **base_metadata,
                        "size_bytes": saved.size,
                        "sha256": saved.sha256,
                        "content_type": mime,
                    },
                    quality_score=quality.score,
                )
                stored.append(row.id)

    def _finish(
        self,
        job_id: UUID,
        attempts: list[dict[str, Any]],
        planned: Sequence[CadProviderPort],
    ) -> GenerateResult:
        """Mark the job completed with every artifact recorded for it; a job another run
        finished meanwhile is answered as it stands."""
        with self.database.unit_of_work() as session:
            job = session.get(CADJob, job_id, with_for_update=True, populate_existing=True)
            if job is None:
                raise NotFound("CAD job", job_id)
            if job.status in (CADJobStatus.COMPLETED, CADJobStatus.FAILED):
                return self._result(session, job_id)
            job = cad_records.advance_cad_job(
                session, job_id, CADJobStatus.COMPLETED, now=self.clock()
            )
            succeeded = [a["provider"] for a in attempts if a["outcome"] == "succeeded"]
            job.details = {
                **job.details,
                "attempts": attempts,
                "provider": succeeded[0],
                "succeededProviders": succeeded,
                "fallbacks": sum(a["outcome"] != "succeeded" for a in attempts),
            }
            result = self._result(session, job_id)
        return GenerateResult(result.job, result.artifacts, [p.name.value for p in planned])

    def _fail(
        self,
        job_id: UUID,
        attempts: list[dict[str, Any]],
        *,
        reason: str | None = None,
        alert: bool = True,
    ) -> int | None:
        """Mark the job failed (``reason``, else what each attempt answered) and, with
        ``alert``, alert operators; the number of alerts queued, or None (nothing done)
        when another run of the job finished it."""
        error = CadGenerationFailed(job_id, attempts, reason=reason)
        notification_ids: list[UUID] = []
        with self.database.unit_of_work() as session:
            current = session.get(CADJob, job_id, with_for_update=True, populate_existing=True)
            if current is None:
                raise NotFound("CAD job", job_id)
            if current.status in (CADJobStatus.COMPLETED, CADJobStatus.FAILED):
                return None
            job = cad_records.advance_cad_job(
                session, job_id, CADJobStatus.FAILED, now=self.clock(), error=str(error)
            )
            job.details = {**job.details, "attempts": attempts, "fallbacks": len(attempts) - 1}
            for recipient in self._alert_recipients(session) if alert else []:
                row = notifications.enqueue(
                    session,
                    channel=self.alert_settings.channel,
                    recipient=recipient,
                    title=f"CAD job failed ({job.policy_mode.value})",
                    body=(
                        f"CAD job {job_id} failed: {sanitize_text(job.prompt, 200)}\n"
                        f"{sanitize_text(str(error), 800)}"
                    ),
                    related_job_id=None,
                )
                notification_ids.append(row.id)
            job.details = {
                **job.details,
                "alerts": [str(n) for n in notification_ids],
                "alertWanted": alert,
            }
        if alert and not notification_ids:
            logger.warning("CAD job %s failed and no operator could be alerted", job_id)
        for notification_id in notification_ids:
            if self.alerts is not None:
                try:
                    self.alerts.defer_notification(notification_id)
                except InfrastructureError:
                    # The periodic sweep delivers it later.
                    logger.warning("alert %s not deferred; the sweep will send it", notification_id)
        return len(notification_ids)

    def _alert_recipients(self, session: Session) -> list[str]:
        if self.alert_settings.recipients:
            return list(self.alert_settings.recipients)
        if self.alert_settings.channel is not NotificationChannel.EMAIL:
            return []
        rows = session.scalars(
            select(User.email).where(
                User.active.is_(True),
                User.email.is_not(None),
                User.roles.overlap([Role.OPERATOR, Role.ADMIN]),
            )
        )
        return sorted({email for email in rows if email})

    # --- recovery -------------------------------------------------------------------

    def recover_stranded(self, now: datetime) -> StrandedJobs:
        """Jobs a lost run left behind, for the periodic sweep to run in the background:

        - ``queued`` for longer than ``QUEUED_GRACE``: the background job was never
          deferred (the queue was down, or the process died between commit and defer);
        - ``running`` with the current provider attempt started longer than
          ``recover_after`` ago: the process running it (an API or CLI process, for the
          offline pipeline) died. ``recover_after`` outlasts any one attempt, so a live
          run is not doubled; a background run is also covered by its queue lock.

        A ``running`` job already started ``MAX_RUNS`` times is failed instead, with the
        reason, and operators are alerted: it keeps killing its process."""
        resume: list[UUID] = []
        exhausted: list[tuple[UUID, int, list[dict[str, Any]]]] = []
        with self.database.unit_of_work() as session:
            queued = session.scalars(
                select(CADJob.id)
                .where(CADJob.status == CADJobStatus.QUEUED, CADJob.created_at < now - QUEUED_GRACE)
                .order_by(CADJob.created_at)
            )
            resume.extend(queued)
            for job in session.scalars(
                select(CADJob)
                .where(CADJob.status == CADJobStatus.RUNNING)
                .order_by(CADJob.created_at)
            ):
                if _progress_at(job) > now - self.recover_after:
                    continue
                runs = int(job.details.get("runs", 1))
                if runs >= MAX_RUNS:
                    exhausted.append((job.id, runs, list(job.details.get("attempts", []))))
                else:
                    resume.append(job.id)
        abandoned: list[UUID] = []
        for job_id, runs, attempts in exhausted:
            reason = _abandoned(runs)
            if self._fail(job_id, attempts, reason=reason) is not None:
                logger.warning("CAD job %s abandoned after %d runs", job_id, runs)
                abandoned.append(job_id)
        return StrandedJobs(resume, abandoned)

    # --- reads ----------------------------------------------------------------------

    def job_with_artifacts(
        self, session: Session, job_id: UUID
    ) -> tuple[CADJob, list[CADArtifact]]:
        job = _get_job(session, job_id)
        artifacts = list(
            session.scalars(
                select(CADArtifact)
                .where(CADArtifact.cad_job_id == job_id)
                .order_by(CADArtifact.created_at, CADArtifact.artifact_key)
            )
        )
        return job, artifacts

    def lineage(self, session: Session, artifact_id: UUID) -> dict[str, Any]:
        """The artifact, its job and that job's ancestors (iterations), the fabrication jobs
        that printed it, and each print's monitor events (the outcome as observed)."""
        artifact = session.get(CADArtifact, artifact_id)
        if artifact is None:
            raise NotFound("CAD artifact", artifact_id)
        chain: list[CADJob] = []
        job: CADJob | None = session.get(CADJob, artifact.cad_job_id)
        seen: set[UUID] = set()
        while job is not None and job.id not in seen:
            seen.add(job.id)
            chain.append(job)
            job = session.get(CADJob, job.parent_job_id) if job.parent_job_id else None
        prints = list(
            session.scalars(
                select(FabricationJob)
                .where(FabricationJob.cad_artifact_id == artifact_id)
                .order_by(FabricationJob.created_at)
            )
        )
        events: dict[UUID, list[PrintMonitorEvent]] = {f.id: [] for f in prints}
        if prints:
            for event in session.scalars(
                select(PrintMonitorEvent)
                .where(PrintMonitorEvent.fabrication_job_id.in_(list(events)))
                .order_by(PrintMonitorEvent.occurred_at)
            ):
                events[event.fabrication_job_id].append(event)
        return {"artifact": artifact, "jobs": chain, "fabrication": prints, "events": events}


def progress_reply(result: GenerateResult) -> str:
    """One line for a conversation reply (the ``cad_generate`` intent): what was started,
    where it stands, and the best score so far."""
    job = result.job
    spec = job.details.get("spec")
    what = spec["family"].replace("_", " ") if spec else "part"
    line = f"CAD job {job.id} for a {what}: {job.status.value}"
    if job.status in (CADJobStatus.QUEUED, CADJobStatus.RUNNING):
        return f"{line}, trying {', '.join(result.providers)}."
    if job.status is CADJobStatus.FAILED:
        return f"{line}; {failure_note(job)}."
    scores = [a.quality_score for a in result.artifacts if a.quality_score is not None]
    best = f", quality {max(scores):.2f}" if scores else ""
    defaults = spec.get("defaults", []) if spec else []
    assumed = f"; assumed defaults for {', '.join(defaults)}" if defaults else ""
    return f"{line} with {len(result.artifacts)} files{best}{assumed}."


def _bed(details: Mapping[str, Any]) -> TargetBed | None:
    target = details.get("targetPrinter")
    if not target or not target.get("bedMm"):
        return None
    x, y, z = (float(v) for v in target["bedMm"])
    return TargetBed((x, y, z), f"{target['bedSource']} ({target['name']})")


def _abandoned(runs: int) -> str:
    return (
        f"started {runs} times and never finished: the process running it died or was "
        "stopped each time"
    )


def _progress_at(job: CADJob) -> datetime:
    """When the job's current provider attempt (or its run) started; jobs recorded before
    attempts were stamped count from their creation."""
    stamp = job.details.get("progressAt")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp)
        except ValueError:
            pass
    return job.created_at


def failure_note(job: CADJob) -> str:
    """What happened about a failed job, as recorded: whether operators were alerted."""
    if job.details.get("alertWanted") is False:
        return "nothing was built because every CAD worker was busy; ask again shortly"
    alerts = len(job.details.get("alerts", []))
    if alerts:
        return "an operator has been alerted"
    return (
        "no operator could be alerted (set KITTYLAB_CAD__ALERT_RECIPIENTS, or give an "
        "operator or admin an email address)"
    )


def _get_job(session: Session, job_id: UUID) -> CADJob:
    job = session.get(CADJob, job_id)
    if job is None:
        raise NotFound("CAD job", job_id)
    return job
