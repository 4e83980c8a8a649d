"""``/api/lab``: changing the lab, and stopping all of it (``POST /api/lab/stop``).

An admin sends a manifest, the same document `kittylab lab apply` reads, so the API and the
CLI can never disagree about what a lab is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from kittylab.api.auth import AdminCaller, Caller, UnitOfWork, container
from kittylab.api.schemas import (
    LabApplyReport,
    LabApplyRequest,
    StopAccepted,
    TallyOut,
    stop_accepted,
)
from kittylab.bootstrap import Container
from kittylab.manifest import apply_manifest, parse_manifest
from kittylab.safety import stop

router = APIRouter(prefix="/api/lab", tags=["lab"])


@router.post(
    "/apply",
    response_model=LabApplyReport,
    responses={422: {"description": "The manifest breaks a rule; `errors` lists each problem."}},
)
def apply_lab(
    body: LabApplyRequest,
    caller: AdminCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> LabApplyReport:
    """Validate a manifest (YAML text) and make the lab match it. With ``dryRun`` nothing
    is stored and the report says what would change."""
    manifest = parse_manifest(body.manifest, "manifest")
    report = apply_manifest(uow, manifest, c.clock(), actor_id=caller.user_id)
    if body.dry_run:
        uow.rollback()
    return LabApplyReport(
        dry_run=body.dry_run,
        changed=report.changed,
        tallies={
            kind: TallyOut(
                created=t.created, updated=t.updated, unchanged=t.unchanged, retired=t.retired
            )
            for kind, t in report.tallies().items()
        },
        warnings=report.warnings,
    )


@router.post("/stop", status_code=202, response_model=StopAccepted)
def stop_lab(
    caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> StopAccepted:
    """Put every device of every zone in its safe state now (``safety.stop``)."""
    result = stop.stop(uow, jobs=c.jobs, bus=c.bus, requester=caller, now=c.clock())
    return stop_accepted(result)
