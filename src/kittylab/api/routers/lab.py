"""``/api/lab``: changing the lab. An admin sends a manifest, the same document
`kittylab lab apply` reads, so the API and the CLI can never disagree about what a lab is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from kittylab.api.auth import AdminCaller, UnitOfWork, container
from kittylab.api.schemas import LabApplyReport, LabApplyRequest, TallyOut
from kittylab.bootstrap import Container
from kittylab.manifest import apply_manifest, parse_manifest

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
