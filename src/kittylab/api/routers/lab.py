"""``/api/lab``: changing the lab, and stopping all of it (``POST /api/lab/stop``).

An admin sends a manifest, the same document `kittylab lab apply` reads, so the API and the
CLI can never disagree about what a lab is. Over the API a manifest that weakens safety
waits for a second person (``manifest.review``); on the host the CLI applies at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from kittylab import bootstrap
from kittylab.api.auth import AdminCaller, Caller, UnitOfWork, container
from kittylab.api.problems import PROBLEM_BASE
from kittylab.api.schemas import (
    LabApplyHeld,
    LabApplyReport,
    LabApplyRequest,
    StopAccepted,
    TallyOut,
    WeakeningOut,
    stop_accepted,
)
from kittylab.bootstrap import Container
from kittylab.domain.lab_review import Weakening
from kittylab.manifest import ApplyReport, parse_manifest, review
from kittylab.safety import stop

router = APIRouter(prefix="/api/lab", tags=["lab"])


@router.post(
    "/apply",
    response_model=LabApplyReport,
    responses={
        202: {
            "model": LabApplyHeld,
            "description": "The manifest weakens safety: nothing is applied; it is held as a "
            "safety event until a second person with the safety role approves it.",
        },
        422: {"description": "The manifest breaks a rule; `errors` lists each problem."},
    },
)
def apply_lab(
    body: LabApplyRequest,
    caller: AdminCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    dry_run_query: Annotated[bool, Query(alias="dryRun")] = False,
) -> LabApplyReport | JSONResponse:
    """Validate a manifest (YAML text) and make the lab match it. A manifest that weakens
    safety (a lower hazard level, a loosened or removed policy, a device moved to a lower
    hazard or redeclared so a held intent becomes unheld, a safety or admin grant, an
    approval key) is not applied: it is held whole (202) until a second person with the
    safety role approves it (``kittylab approve EVENT``). With ``dryRun`` (in the body or
    the query) nothing is stored or held and the report says what would change and what
    it weakens."""
    manifest = parse_manifest(body.manifest, "manifest")
    dry_run = body.dry_run or dry_run_query
    outcome = review.submit(
        uow,
        manifest,
        body.manifest,
        caller,
        c.clock(),
        bootstrap.safety_context(c.settings),
        jobs=c.jobs,
        bus=c.bus,
        dry_run=dry_run,
    )
    if isinstance(outcome, review.Held) and not dry_run:
        return JSONResponse(_held(outcome).model_dump(mode="json", by_alias=True), status_code=202)
    return LabApplyReport(
        dry_run=dry_run,
        changed=outcome.report.changed,
        tallies=_tallies(outcome.report),
        warnings=outcome.report.warnings,
        held=isinstance(outcome, review.Held),
        weakening=_weakening(outcome.review.weakening),
    )


def _tallies(report: ApplyReport) -> dict[str, TallyOut]:
    return {
        kind: TallyOut(
            created=t.created, updated=t.updated, unchanged=t.unchanged, retired=t.retired
        )
        for kind, t in report.tallies().items()
    }


def _weakening(found: list[Weakening]) -> list[WeakeningOut]:
    return [WeakeningOut(kind=w.kind, subject=w.subject, change=w.change) for w in found]


def _held(held: review.Held) -> LabApplyHeld:
    event = held.event
    assert event.expires_at is not None  # a held change always expires
    count = len(held.review.weakening)
    return LabApplyHeld(
        type=PROBLEM_BASE + "manifest-held",
        title="The manifest weakens safety: held for a second person",
        status=202,
        detail=(
            f"{count} change(s) weaken safety, so nothing was applied. The whole manifest "
            f"waits (event {event.id}) for the signed approval of someone with the safety "
            f"role other than you, until {event.expires_at:%Y-%m-%d %H:%M} UTC; it is void "
            "if the lab changes before then."
        ),
        event_id=event.id,
        change_hash=held.review.change_hash,
        lab_revision=held.review.revision,
        expires_at=event.expires_at,
        weakening=_weakening(held.review.weakening),
        tallies=_tallies(held.report),
        approve_with=f"kittylab approve {event.id} --key YOUR_KEY",
    )


@router.post("/stop", status_code=202, response_model=StopAccepted)
def stop_lab(
    caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> StopAccepted:
    """Put every device of every zone in its safe state now (``safety.stop``)."""
    result = stop.stop(uow, jobs=c.jobs, bus=c.bus, requester=caller, now=c.clock())
    return stop_accepted(result)
