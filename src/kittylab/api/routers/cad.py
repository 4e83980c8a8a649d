"""``/api/cad``: CAD jobs and artifacts — generate, iterate, list and read, compare,
download, lineage — and the providers' status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import Field, StringConstraints
from sqlalchemy import select

from kittylab.adapters.db.tables import CADArtifact, CADJob
from kittylab.api import problems
from kittylab.api.auth import Caller, UnitOfWork, container, require
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import CADArtifactOut, CADJobOut, CamelModel, StrictInput
from kittylab.bootstrap import Container
from kittylab.cad import job_details
from kittylab.cad.errors import CadBudgetExceeded, CadGenerationFailed
from kittylab.cad.planning import PolicyMode
from kittylab.cad.runs import GenerateRequest, GenerateResult, content_type
from kittylab.domain.cad_prompt import MAX_PROMPT_CHARS, UnknownPart, parse_prompt
from kittylab.domain.cad_spec import expected_bbox
from kittylab.domain.enums import (
    ArtifactType,
    CADJobStatus,
    CADProvider,
    FabricationStatus,
    MonitorEventType,
)
from kittylab.domain.errors import NotFound
from kittylab.domain.principal import CAD_GENERATION_ROLES, Principal
from kittylab.records.ports import ArtifactMissing

router = APIRouter(prefix="/api/cad", tags=["cad"])

Prompt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[^\x00]*$")]
Wired = Annotated[Container, Depends(container)]
Designer = Annotated[Principal, Depends(require(*CAD_GENERATION_ROLES))]
"""Generating (and iterating): engineer, operator or admin; every read is open to all."""


class GenerateIn(StrictInput):
    conversation_id: UUID | None = None
    prompt: Prompt
    policy_mode: PolicyMode = PolicyMode.AUTO
    references: list[Reference] = Field(default_factory=list, max_length=8)
    providers: list[CADProvider] = Field(
        default_factory=list,
        max_length=len(CADProvider),
        description="Only these providers, in this order; empty: every one the policy allows.",
    )
    compare: bool = Field(
        False,
        description="Run every planned provider and keep each one's artifacts (see "
        "/compare), instead of stopping at the first that succeeds.",
    )
    printer_id: UUID | None = Field(
        None, description="The printer the part is for: its bed is the one the fit is scored on."
    )
    wait: bool = Field(
        True,
        description="Offline: build before answering (the default). False: answer at once "
        "with the queued job and build it in the background (follow GET /api/cad/jobs/{id}).",
    )


class IterateIn(StrictInput):
    follow_up: Prompt
    policy_mode: PolicyMode = PolicyMode.OFFLINE
    providers: list[CADProvider] = Field(
        default_factory=list,
        max_length=len(CADProvider),
        description="As for /generate (the parent's choice is not carried over).",
    )
    compare: bool = Field(False, description="As for /generate.")
    printer_id: UUID | None = Field(None, description="As for /generate.")
    wait: bool = Field(True, description="As for /generate.")


class ReadIn(StrictInput):
    prompt: Prompt


class ReadOut(CamelModel):
    """What the part library's grammar reads in a prompt, before anything is built."""

    understood: bool
    """False when the prompt names no part of the library (an online text-to-CAD
    provider may still build it; offline cannot)."""
    reason: str | None
    spec: dict[str, Any] | None
    defaults_used: list[str]
    """Parameters the prompt does not state, filled from the family's defaults."""
    expected_bounding_box: list[float] | None
    readings: list[ReadingOut]


class ArtifactLink(CADArtifactOut):
    download_url: str


class ReadingOut(CamelModel):
    """A phrase of the prompt that reads two ways: the reading the part was built from,
    and the other one, offered through ``POST /api/cad/jobs/{id}/iterate`` with
    ``followUp`` (empty, with ``otherParams`` empty, when the other reading is impossible
    and only explained)."""

    phrase: str
    taken: str
    other: str
    other_params: dict[str, float]
    follow_up: str


class GenerateOut(CamelModel):
    cad_job_id: UUID
    status: CADJobStatus
    policy_mode: PolicyMode
    providers: list[str]
    spec: dict[str, Any] | None
    defaults_used: list[str]
    readings: list[ReadingOut] = Field(
        default_factory=list,
        description="Ambiguous phrases: the reading taken and the other one, offered.",
    )
    artifacts: list[ArtifactLink]


class CompareEntry(CamelModel):
    provider: str
    quality_score: float | None
    quality: dict[str, Any] | None
    bounding_box: dict[str, Any] | None
    model_version: str | None
    preview_url: str | None
    artifacts: list[ArtifactLink]


class CompareOut(CamelModel):
    job: CADJobOut
    entries: list[CompareEntry]


class MonitorEventLink(CamelModel):
    event_type: MonitorEventType
    confidence: float | None
    occurred_at: datetime


class FabricationLink(CamelModel):
    id: UUID
    device_id: UUID
    status: FabricationStatus
    started_at: datetime | None
    completed_at: datetime | None
    outcome: str | None
    """The print's final status once it has one."""
    monitor_events: list[MonitorEventLink]


class LineageOut(CamelModel):
    artifact: ArtifactLink
    jobs: list[CADJobOut]
    """The artifact's job first, then each job it iterated on, back to the first prompt."""
    fabrication_jobs: list[FabricationLink]


class ProviderStatusOut(CamelModel):
    provider: str
    offline: bool
    available: bool
    reason: str | None


def _link(artifact: CADArtifact) -> ArtifactLink:
    out = CADArtifactOut.model_validate(artifact)
    return ArtifactLink(
        **out.model_dump(), download_url=f"/api/cad/artifacts/{artifact.id}/download"
    )


def _generated(result: GenerateResult, mode: PolicyMode) -> JSONResponse:
    spec = job_details.read(result.job).spec
    body = GenerateOut(
        cad_job_id=result.job.id,
        status=result.job.status,
        policy_mode=mode,
        providers=result.providers,
        spec=spec,
        defaults_used=list(spec.get("defaults", [])) if spec else [],
        readings=[ReadingOut.model_validate(r) for r in spec.get("readings", [])] if spec else [],
        artifacts=[_link(a) for a in result.artifacts],
    )
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True),
        status_code=202,
        headers={"Location": f"/api/cad/jobs/{result.job.id}"},
    )


def _failed(request: Request, exc: CadGenerationFailed) -> JSONResponse:
    alerted = (
        "an operator has been alerted"
        if exc.alerts
        else "no operator could be alerted (none is configured to receive CAD alerts)"
    )
    return problems.problem(
        request,
        502,
        "cad-generation-failed",
        "CAD generation failed",
        f"{exc} — {alerted}; see GET /api/cad/jobs/{exc.job_id}",
        field="prompt",
    )


def _over_budget(request: Request, exc: CadBudgetExceeded) -> JSONResponse:
    """402: the online call would pass the person's daily budget; ``offline`` says how to
    build the part here instead, when the part library can."""
    offer = {"offline": {"policyMode": "offline"}} if exc.offline_offer else None
    return problems.problem(
        request,
        402,
        "cad-budget-exceeded",
        "Online CAD budget exceeded",
        str(exc),
        field="policyMode",
        extensions=offer,
    )


_REFUSALS: dict[int | str, dict[str, Any]] = {
    402: {"description": "the online call would pass the daily budget; offline is offered"},
    409: {"description": "no provider for the policy"},
    502: {"description": "failed"},
}


@router.post("/generate", status_code=202, response_model=GenerateOut, responses=_REFUSALS)
def generate(body: GenerateIn, caller: Designer, c: Wired, request: Request) -> Response:
    """Offline: the artifacts are built before the answer. Online and auto: queued."""
    try:
        result = c.cad.generate(
            GenerateRequest(
                prompt=body.prompt,
                policy_mode=body.policy_mode,
                requested_by=caller.user_id,
                conversation_id=body.conversation_id,
                references=tuple(body.references),
                providers=tuple(p.value for p in body.providers),
                compare=body.compare,
                printer_id=body.printer_id,
                background=not body.wait,
            )
        )
    except CadGenerationFailed as exc:
        return _failed(request, exc)
    except CadBudgetExceeded as exc:
        return _over_budget(request, exc)
    return _generated(result, body.policy_mode)


@router.post(
    "/jobs/{job_id}/iterate", status_code=202, response_model=GenerateOut, responses=_REFUSALS
)
def iterate(
    job_id: UUID, body: IterateIn, caller: Designer, c: Wired, request: Request
) -> Response:
    """A new job from this one's specification changed by ``followUp``, linked to it."""
    try:
        result = c.cad.iterate(
            job_id,
            body.follow_up,
            requested_by=caller.user_id,
            mode=body.policy_mode,
            providers=tuple(p.value for p in body.providers),
            compare=body.compare,
            printer_id=body.printer_id,
            background=not body.wait,
        )
    except CadGenerationFailed as exc:
        return _failed(request, exc)
    except CadBudgetExceeded as exc:
        return _over_budget(request, exc)
    return _generated(result, body.policy_mode)


@router.post("/read", response_model=ReadOut)
def read_prompt(body: ReadIn, _: Caller) -> ReadOut:
    """The part specification the grammar reads in ``prompt`` — the family, every
    parameter, which of them are defaults, the bounding box the part will have and the
    phrases that read two ways — without building anything. 422 (field ``prompt``) for a
    prompt that cannot be a part (empty, code, contradictory or impossible sizes)."""
    try:
        spec = parse_prompt(body.prompt)
    except UnknownPart as exc:
        return ReadOut(
            understood=False,
            reason=exc.message,
            spec=None,
            defaults_used=[],
            expected_bounding_box=None,
            readings=[],
        )
    data = spec.to_json()
    return ReadOut(
        understood=True,
        reason=None,
        spec=data,
        defaults_used=list(spec.defaults),
        expected_bounding_box=[round(v, 4) for v in expected_bbox(spec)],
        readings=[ReadingOut.model_validate(r) for r in data["readings"]],
    )


@router.get("/jobs", response_model=Page[CADJobOut])
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


@router.get("/jobs/{job_id}", response_model=CADJobOut)
def get_cad_job(job_id: UUID, _: Caller, uow: UnitOfWork) -> CADJob:
    return get_or_404(uow, CADJob, job_id, "CAD job")


@router.get("/artifacts", response_model=Page[CADArtifactOut])
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


@router.get("/jobs/{job_id}/compare", response_model=CompareOut)
def compare(job_id: UUID, _: Caller, uow: UnitOfWork, c: Wired) -> CompareOut:
    """The job's artifacts grouped by provider, side by side with scores and previews."""
    job, artifacts = c.cad.job_with_artifacts(uow, job_id)
    entries: dict[str, CompareEntry] = {}
    for artifact in artifacts:
        name = artifact.provider.value
        meta = artifact.metadata_
        entry = entries.setdefault(
            name,
            CompareEntry(
                provider=name,
                quality_score=artifact.quality_score,
                quality=meta.get("quality"),
                bounding_box=meta.get("bounding_box"),
                model_version=meta.get("model_version"),
                preview_url=None,
                artifacts=[],
            ),
        )
        link = _link(artifact)
        entry.artifacts.append(link)
        if artifact.artifact_type.value == "preview":
            entry.preview_url = link.download_url
    ranked = sorted(entries.values(), key=lambda e: -(e.quality_score or 0))
    return CompareOut(job=CADJobOut.model_validate(job), entries=ranked)


@router.get(
    "/artifacts/{artifact_id}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 307: {"description": "S3"}},
)
def download(artifact_id: UUID, _: Caller, uow: UnitOfWork, c: Wired) -> Response:
    """The file, streamed from the store; a redirect when the store can presign a URL."""
    artifact = get_or_404(uow, CADArtifact, artifact_id, "CAD artifact")
    key = artifact.artifact_key
    url = c.artifacts.presigned_url(key, c.settings.storage.presign_expiry_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    try:
        chunks: Iterator[bytes] = c.artifacts.read_chunks(key)
    except ArtifactMissing:
        raise NotFound("stored file for CAD artifact", artifact_id) from None
    filename = key.rsplit("/", 2)
    name = f"{artifact.cad_job_id}-{filename[-2]}-{filename[-1]}"
    return StreamingResponse(
        chunks,
        media_type=content_type(artifact.artifact_type),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/artifacts/{artifact_id}/lineage", response_model=LineageOut)
def lineage(artifact_id: UUID, _: Caller, uow: UnitOfWork, c: Wired) -> LineageOut:
    """CAD job (and the jobs it iterated on) → this artifact → fabrication jobs → outcome."""
    found = c.cad.lineage(uow, artifact_id)
    return LineageOut(
        artifact=_link(found.artifact),
        jobs=[CADJobOut.model_validate(j) for j in found.jobs],
        fabrication_jobs=[
            FabricationLink(
                id=f.id,
                device_id=f.device_id,
                status=f.status,
                started_at=f.started_at,
                completed_at=f.completed_at,
                outcome=f.status.value
                if f.status
                in (
                    FabricationStatus.COMPLETED,
                    FabricationStatus.FAILED,
                    FabricationStatus.ABORTED,
                )
                else None,
                monitor_events=[
                    MonitorEventLink.model_validate(e) for e in found.events.get(f.id, [])
                ],
            )
            for f in found.prints
        ],
    )


@router.get("/providers", response_model=list[ProviderStatusOut])
def providers(_: Caller, c: Wired) -> list[ProviderStatusOut]:
    """Every CAD provider, whether it works offline, and why it is unavailable if it is."""
    return [ProviderStatusOut.model_validate(status) for status in c.cad.provider_status()]
