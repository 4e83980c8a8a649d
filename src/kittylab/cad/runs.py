"""CAD generation: prompt → providers → scored artifacts in the store → records.

``CadService.generate`` reads the prompt (``kittylab.domain.cad_prompt``), plans which
providers to try for the policy, records a ``queued`` job and then:

- ``offline`` (and ``auto`` when no online provider is available): runs the job before
  returning — the offline pipeline must succeed before the caller gets an answer; when it
  fails an operator is alerted and ``CadGenerationFailed`` is raised;
- ``online`` and ``auto`` with an online provider: defers the job to a background worker
  and returns at once — as does an offline job asked to run in the ``background`` (the
  console's CAD studio, which follows the job's progress).

``run_job`` tries the planned providers in order until one succeeds (``auto``: online
providers first, then offline ones) — or, for a ``compare`` job, runs every one of them and
keeps each success side by side — recording every attempt and fallback on the job's
``details`` and in the metrics. A request may name the providers to use (``providers``).
Each output file is scored (``ArtifactAnalyzer``), stored under ``cad/<job>/<provider>/…``
and recorded as a ``CADArtifact`` with its bounding box, material hints, generation
parameters and the provider's model version.

No database transaction is held while a provider works. What a job tries is decided in
``planning``, its lost runs are found in ``recovery``, reads are in ``lineage``; the ports
and errors have their own modules.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from prometheus_client import Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import CADArtifact, CADJob, User
from kittylab.cad import job_details, lineage, planning, recovery, spending
from kittylab.cad import records as cad_records
from kittylab.cad.errors import CadBudgetExceeded, CadBusy, CadGenerationFailed, ProviderUnavailable
from kittylab.cad.job_details import Attempt, CadJobDetails
from kittylab.cad.lineage import Lineage
from kittylab.cad.planning import PolicyMode
from kittylab.cad.ports import (
    AlertQueue,
    ArtifactAnalyzer,
    BuildVolumes,
    CadJobQueue,
    CadProviderPort,
    ProviderOutput,
    ProviderRequest,
    Quality,
    TargetBed,
    image_references,
)
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
    NotificationChannel,
    Role,
)
from kittylab.domain.errors import Busy, Conflict, InfrastructureError, NotFound, ValidationFailed
from kittylab.domain.sanitize import sanitize_text
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
    background: bool = False
    """Run an offline job in the background too, like an online one, and answer at once
    with the ``queued`` job (the console follows its progress); needs the job queue."""


@dataclass(frozen=True)
class _Run:
    """A job being run: what it asks for, and the providers whose artifacts an earlier
    run of it already recorded."""

    details: CadJobDetails
    prompt: str
    recorded: list[str]
    runs: int
    """This run included."""
    requested_by: UUID | None
    """Whose budget pays for the job's online calls."""


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
        budget: spending.Budget | None = None,
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
        # No price table: every online call is refused (fail closed).
        self.budget = budget or spending.Budget(prices={}, daily_usd=Decimal(0))

    # --- planning and reads (``planning``, ``lineage``) ----------------------------

    def provider_status(self) -> list[planning.ProviderStatus]:
        """Every provider with whether it is offline and why it is unavailable, if it is."""
        return planning.provider_status(self.providers)

    def plan(
        self,
        mode: PolicyMode,
        *,
        have_spec: bool,
        have_image: bool = False,
        only: Sequence[str] = (),
    ) -> list[CadProviderPort]:
        """``planning.plan`` over this service's providers."""
        return planning.plan(
            self.providers, mode, have_spec=have_spec, have_image=have_image, only=only
        )

    def job_with_artifacts(
        self, session: Session, job_id: UUID
    ) -> tuple[CADJob, list[CADArtifact]]:
        return lineage.job_with_artifacts(session, job_id)

    def lineage(self, session: Session, artifact_id: UUID) -> Lineage:
        """``lineage.lineage``: the artifact, its job's iterations, its prints and events."""
        return lineage.lineage(session, artifact_id)

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
        details = CadJobDetails(
            requested_policy=request.policy_mode.value,
            planned_providers=tuple(p.name.value for p in planned),
            compare=request.compare,
            references=tuple(request.references),
            attempts=(),
            spec=spec.to_json() if spec is not None else None,
            expected_bbox=expected_bbox(spec) if spec is not None else None,
        )
        offline = request.policy_mode is PolicyMode.OFFLINE or all(p.offline for p in planned)
        run_now = offline and not request.background
        if not run_now and self.queue is None:
            raise InfrastructureError("no job queue is configured for background CAD jobs")
        if not offline:
            self._check_affordable(planned, request, have_spec=spec is not None)
        with self.database.unit_of_work() as session:
            if request.printer_id is not None:
                target = planning.target_printer(session, request.printer_id, self.build_volumes)
                details = replace(details, target_printer=target)
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
                details=job_details.new_details(details),
                now=self.clock(),
            )
            job_id = job.id
            if not run_now and self.queue is not None:
                # Run in the background once committed. A deferral that fails is logged and
                # ``resume_cad_jobs`` runs the job once the queue is back: answering an
                # error instead would invite a retry that builds (and pays for) it twice.
                session.after_commit(self.queue.defer_cad_job, job_id)
        if run_now:
            # ``auto`` with no online provider available is the offline pipeline: it runs
            # now, like ``offline``, instead of waiting for a background worker.
            return self.run_job(job_id)
        with self.database.unit_of_work() as session:
            stored = lineage.get_job(session, job_id)
            session.expunge(stored)
        return GenerateResult(stored, [], [p.name.value for p in planned])

    def _check_affordable(
        self, planned: Sequence[CadProviderPort], request: GenerateRequest, *, have_spec: bool
    ) -> None:
        """``CadBudgetExceeded`` (offering the offline build when it can make the part) when
        none of the planned online providers' calls fits the person's budget today. The
        hard cap is the hold each call takes when it runs (``run_job``)."""
        refusal: CadBudgetExceeded | None = None
        with self.database.unit_of_work() as session:
            for provider in (p for p in planned if not p.offline):
                try:
                    spending.check(
                        session,
                        self.budget,
                        provider.name.value,
                        request.requested_by,
                        self.clock(),
                    )
                except CadBudgetExceeded as exc:
                    refusal = refusal or exc
                    continue
                return
        if refusal is None:
            return
        try:
            self.plan(PolicyMode.OFFLINE, have_spec=have_spec)
        except Conflict:
            raise refusal.offering_offline(False) from None
        raise refusal.offering_offline(True)

    def iterate(
        self,
        job_id: UUID,
        follow_up: str,
        *,
        requested_by: UUID | None,
        mode: PolicyMode,
        providers: tuple[str, ...] = (),
        compare: bool = False,
        printer_id: UUID | None = None,
        background: bool = False,
    ) -> GenerateResult:
        """A new job from ``job_id``'s specification changed by ``follow_up`` ("make it
        5 mm taller"), linked to it as its parent. ``providers``, ``compare``,
        ``printer_id`` and ``background`` are as for ``generate``."""
        with self.database.unit_of_work() as session:
            parent = lineage.get_job(session, job_id)
            parent_spec = job_details.read(parent).part_spec()
            conversation_id = parent.conversation_id
            parent_prompt = parent.prompt
        if parent_spec is None:
            raise Conflict(
                "that job has no part specification to change; send a new prompt",
                field="followUp",
            )
        spec = apply_follow_up(parent_spec, follow_up)
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
                providers=providers,
                compare=compare,
                printer_id=printer_id,
                background=background,
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
        if run.runs > recovery.MAX_RUNS and not run.recorded:
            # Retried after each death of its process (a stalled background job): stop.
            gave_up = recovery.abandoned(run.runs - 1)
            alerts = self._fail(job_id, list(run.details.attempts or ()), reason=gave_up)
            if alerts is None:
                return self._stored(job_id)
            raise CadGenerationFailed(job_id, [], reason=gave_up, alerts=alerts)
        details = run.details
        spec = details.part_spec()
        planned = [p for name in details.planned_providers for p in self._by_name(name)]
        request = ProviderRequest(run.prompt, spec, details.references or ())
        compare = bool(details.compare)
        # Each provider's artifacts are recorded in one transaction, so what an earlier run
        # of this job (one that died before finishing) recorded is complete: it counts as
        # that provider's success and is not built again.
        attempts = [Attempt(name, "succeeded", recovered=True) for name in run.recorded]
        if run.recorded and not compare:
            return self._finish(job_id, attempts, planned)
        for provider in planned:
            if provider.name.value in run.recorded:
                continue
            if attempts and not attempts[-1].succeeded:
                CAD_FALLBACKS.labels(attempts[-1].provider, provider.name.value).inc()
            attempt = self._attempt(job_id, provider, request, spec, run, _bed(details))
            attempts.append(attempt)
            if attempt.succeeded and not compare:
                break
        if any(a.succeeded for a in attempts):
            return self._finish(job_id, attempts, planned)
        refused = [a for a in attempts if a.outcome == "refused"]
        if refused and not any(a.outcome in ("failed", "busy") for a in attempts):
            # Past the budget is the person's limit, not a fault: nobody is alerted.
            reason = f"online CAD refused: {refused[0].error}"
            self._fail(job_id, attempts, reason=reason, alert=False)
            return self._stored(job_id)
        busy = [a for a in attempts if a.outcome == "busy"]
        if busy and not any(a.outcome == "failed" for a in attempts):
            if self._fail(job_id, attempts, reason=BUSY_REASON, alert=False) is None:
                return self._stored(job_id)
            raise CadBusy(job_id, max(a.retry_after or 0.0 for a in busy))
        alerts = self._fail(job_id, attempts)
        if alerts is None:
            return self._stored(job_id)  # another run of the job finished it meanwhile
        raise CadGenerationFailed(job_id, attempts, alerts=alerts)

    # --- steps ----------------------------------------------------------------------

    def _attempt(
        self,
        job_id: UUID,
        provider: CadProviderPort,
        request: ProviderRequest,
        spec: PartSpec | None,
        run: _Run,
        bed: TargetBed | None,
    ) -> Attempt:
        """One provider's try: build, score and record its files; what it answered."""
        name = provider.name.value
        attempt = Attempt(name)
        reason = provider.unavailable_reason()
        if reason is not None:
            CAD_ATTEMPTS.labels(name, "unavailable").inc()
            return replace(attempt, outcome="unavailable", error=reason)
        charge: UUID | None = None
        if not provider.offline:
            try:
                charge, estimate = self._hold(job_id, provider, run.requested_by)
            except CadBudgetExceeded as exc:
                CAD_ATTEMPTS.labels(name, "refused").inc()
                return replace(attempt, outcome="refused", error=exc.reason)
            attempt = replace(attempt, estimate_usd=estimate)
        self._mark_progress(job_id, name)
        started = time.perf_counter()
        work_dir = Path(tempfile.mkdtemp(prefix="kittylab-cad-", dir=self.work_root))
        spent = True
        try:
            try:
                output = provider.generate(request, work_dir)
            except (ProviderUnavailable, Busy):
                spent = False  # nothing was asked of the service
                raise
            finally:
                if charge is not None:
                    attempt = replace(attempt, cost_usd=self._settle(charge, spent=spent))
            score = self._store(job_id, provider, output, spec, bed)
        except Busy as exc:
            # Load, not a fault: the next provider may have room.
            CAD_ATTEMPTS.labels(name, "busy").inc()
            return replace(
                attempt, outcome="busy", error=str(exc), retry_after=exc.retry_after_seconds
            )
        except Exception as exc:
            message = sanitize_text(f"{type(exc).__name__}: {exc}", 500)
            logger.warning("CAD provider %s failed: %s", name, message)
            CAD_ATTEMPTS.labels(name, "failed").inc()
            seconds = round(time.perf_counter() - started, 3)
            return replace(attempt, outcome="failed", error=message, seconds=seconds)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        elapsed = time.perf_counter() - started
        CAD_SECONDS.labels(name).observe(elapsed)
        CAD_ATTEMPTS.labels(name, "succeeded").inc()
        return replace(attempt, outcome="succeeded", seconds=round(elapsed, 3), quality_score=score)

    def _hold(
        self, job_id: UUID, provider: CadProviderPort, requested_by: UUID | None
    ) -> tuple[UUID, str]:
        """Hold the call's estimate on the person's budget, committed before the call;
        ``CadBudgetExceeded`` past it. The charge's id and its estimate (US dollars)."""
        with self.database.unit_of_work() as session:
            charge = spending.hold(
                session,
                self.budget,
                job_id=job_id,
                provider=provider.name,
                user_id=requested_by,
                now=self.clock(),
            )
            return charge.id, str(charge.estimate_usd)

    def _settle(self, charge_id: UUID, *, spent: bool) -> str | None:
        """Close the charge; what the call cost (US dollars), if it was settled."""
        with self.database.unit_of_work() as session:
            charge = spending.close(session, charge_id, spent=spent, now=self.clock())
            return str(charge.cost_usd) if charge is not None else None

    def _by_name(self, name: str) -> list[CadProviderPort]:
        return [p for p in self.providers if p.name.value == name]

    def _begin(self, job_id: UUID) -> _Run | GenerateResult:
        """Move the job to ``running`` (from ``queued``; a ``running`` one is being run
        again) and say what it holds; a finished job is answered as it is stored."""
        with self.database.unit_of_work() as session:
            job = lineage.get_job(session, job_id)
            if job.status in (CADJobStatus.COMPLETED, CADJobStatus.FAILED):
                return self._result(session, job_id)
            if job.status is CADJobStatus.QUEUED:
                job = cad_records.advance_cad_job(
                    session, job_id, CADJobStatus.RUNNING, now=self.clock()
                )
            before = job_details.read(job)
            details = job_details.write(
                job, replace(before, runs=(before.runs or 0) + 1, progress_at=self.clock())
            )
            recorded = session.scalars(
                select(CADArtifact.provider)
                .where(CADArtifact.cad_job_id == job_id)
                .distinct()
                .order_by(CADArtifact.provider)
            )
            return _Run(
                details,
                job.prompt,
                [p.value for p in recorded],
                details.runs or 1,
                job.requested_by,
            )

    def _mark_progress(self, job_id: UUID, provider: str) -> None:
        """Stamp the start of a provider attempt: ``recover_stranded`` measures from it."""
        with self.database.unit_of_work() as session:
            job = session.get(CADJob, job_id, with_for_update=True, populate_existing=True)
            if job is not None:
                details = job_details.read(job)
                job_details.write(
                    job, replace(details, progress_at=self.clock(), current_provider=provider)
                )

    def _stored(self, job_id: UUID) -> GenerateResult:
        with self.database.unit_of_work() as session:
            return self._result(session, job_id)

    def _result(self, session: Session, job_id: UUID) -> GenerateResult:
        """The job and its artifacts as stored, detached from ``session``."""
        job, stored = self.job_with_artifacts(session, job_id)
        planned_names = list(job_details.read(job).planned_providers)
        session.flush()
        session.expunge_all()
        return GenerateResult(job, stored, planned_names)

    def _store(
        self,
        job_id: UUID,
        provider: CadProviderPort,
        output: ProviderOutput,
        spec: PartSpec | None,
        bed: TargetBed | None,
    ) -> float:
        """Score, store and record the provider's files; the quality score."""
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
        return quality.score

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
        attempts: Sequence[Attempt],
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
            succeeded = tuple(a.provider for a in attempts if a.succeeded)
            job_details.write(
                job,
                replace(
                    job_details.read(job),
                    attempts=tuple(attempts),
                    provider=succeeded[0],
                    succeeded_providers=succeeded,
                    fallbacks=sum(not a.succeeded for a in attempts),
                    cost_usd=_cost(attempts),
                ),
            )
            result = self._result(session, job_id)
        return GenerateResult(result.job, result.artifacts, [p.name.value for p in planned])

    def _fail(
        self,
        job_id: UUID,
        attempts: Sequence[Attempt],
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
            job_details.write(
                job,
                replace(
                    job_details.read(job),
                    attempts=tuple(attempts),
                    fallbacks=len(attempts) - 1,
                    cost_usd=_cost(attempts),
                ),
            )
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
            job_details.write(
                job,
                replace(
                    job_details.read(job),
                    alerts=tuple(notification_ids),
                    alert_wanted=alert,
                ),
            )
            if self.alerts is not None:
                for notification_id in notification_ids:
                    # Delivered once committed (or by the periodic sweep).
                    session.after_commit(self.alerts.defer_notification, notification_id)
        if alert and not notification_ids:
            logger.warning("CAD job %s failed and no operator could be alerted", job_id)
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

    # --- recovery (``recovery``) ----------------------------------------------------

    def recover_stranded(self, now: datetime) -> recovery.StrandedJobs:
        """Jobs a lost run left behind (``recovery.recover_stranded``); those whose runs
        keep dying are failed and operators alerted."""
        return recovery.recover_stranded(self.database, now, self.recover_after, self._fail)


def progress_reply(result: GenerateResult) -> str:
    """One line for a conversation reply (the ``cad_generate`` intent): what was started,
    where it stands, and the best score so far."""
    job = result.job
    spec = job_details.read(job).part_spec()
    what = spec.family.value.replace("_", " ") if spec else "part"
    line = f"CAD job {job.id} for a {what}: {job.status.value}"
    if job.status in (CADJobStatus.QUEUED, CADJobStatus.RUNNING):
        return f"{line}, trying {', '.join(result.providers)}."
    if job.status is CADJobStatus.FAILED:
        return f"{line}; {failure_note(job)}."
    scores = [a.quality_score for a in result.artifacts if a.quality_score is not None]
    best = f", quality {max(scores):.2f}" if scores else ""
    defaults = spec.defaults if spec else ()
    assumed = f"; assumed defaults for {', '.join(defaults)}" if defaults else ""
    return f"{line} with {len(result.artifacts)} files{best}{assumed}."


def _cost(attempts: Sequence[Attempt]) -> Decimal:
    """What the job's online calls cost, as the charges were settled (US dollars)."""
    return sum((Decimal(a.cost_usd or "0") for a in attempts), Decimal(0))


def _bed(details: CadJobDetails) -> TargetBed | None:
    target = details.target_printer
    if target is None or target.bed_mm is None:
        return None
    return TargetBed(target.bed_mm, f"{target.bed_source} ({target.name})")


def failure_note(job: CADJob) -> str:
    """What happened about a failed job, as recorded: whether operators were alerted."""
    details = job_details.read(job)
    if details.alert_wanted is False:
        return "nothing was built because every CAD worker was busy; ask again shortly"
    alerts = len(details.alerts or ())
    if alerts:
        return "an operator has been alerted"
    return (
        "no operator could be alerted (set KITTYLAB_CAD__ALERT_RECIPIENTS, or give an "
        "operator or admin an email address)"
    )
