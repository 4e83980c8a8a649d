"""The console's CAD studio (issue 18, item 1): the pages ``/studio`` and
``/studio/jobs/{id}``, and their fragments under ``/console/studio/…``.

``/studio`` has the prompt box: as the engineer types, the grammar's reading is shown
(``/console/studio/read``: the part, every size, which ones are defaults, the bounding box
it will have, the phrases that read two ways) before anything is built. Generating is the
API's own ``POST /api/cad/generate`` made by the page (``wait: false``: the job is built in
the background and the page follows it), so the roles, budgets and refusals are the API's.

``/studio/jobs/{id}`` follows the job live (its progress and each provider's slot re-read
every second until they are finished) and shows the results side by side per provider:
the 3D view of its STL (three.js, loaded on this page only), the quality score and its
breakdown, the bounding box against the request, the thinnest wall, the printers it fits,
its STEP and STL; a follow-up ("make it 5 mm taller") is ``POST /api/cad/jobs/{id}/iterate``
and opens the child job; "send to printer" is ``POST /api/fabrication/jobs`` with the
artifact (the same gate and role check as the prints page). The lineage runs from the first
prompt through its iterations to the prints made from their parts and how they ended.

From outside the lab's trusted networks the pages show no generate, iterate or print
controls (the API refuses them anyway).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from kittylab.adapters.db.tables import CADJob
from kittylab.api import networks
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.console import _canonical_host, _fragment, _page, _viewer
from kittylab.bootstrap import Container
from kittylab.cad.fit import Bed, printer_beds
from kittylab.cad.planning import ProviderStatus
from kittylab.domain.actuation import PRINTING_ROLES
from kittylab.domain.cad_prompt import MAX_PROMPT_CHARS, UnknownPart, parse_prompt
from kittylab.domain.cad_spec import FAMILY_PARAMETERS, expected_bbox
from kittylab.domain.errors import NotFound, ValidationFailed
from kittylab.domain.principal import CAD_GENERATION_ROLES, Principal
from kittylab.web import studio

router = APIRouter(include_in_schema=False)

POLL_SECONDS = 1.0
"""How often an unfinished job's progress and provider slots are re-read."""


@dataclasses.dataclass(frozen=True)
class Powers:
    generate: bool
    """Generate and iterate (engineers, operators, admins; inside the lab's networks)."""
    print: bool
    """Send a part to a printer's queue (the roles that queue prints)."""


def _powers(principal: Principal, remote: bool) -> Powers:
    inside = not remote
    return Powers(
        generate=inside and principal.has_any(*CAD_GENERATION_ROLES),
        print=inside and principal.has_any(*PRINTING_ROLES),
    )


def _beds(uow: UnitOfWork, c: Container) -> list[Bed]:
    return printer_beds(uow, c.cad.build_volumes, c.settings.cad.bed_mm)


def _providers(c: Container) -> list[ProviderStatus]:
    return c.cad.provider_status()


@router.get("/studio", response_class=HTMLResponse)
def studio_page(
    request: Request, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> Response:
    """The prompt box, the providers (which work offline, which are unavailable and why),
    the printer to score the fit on, and the newest jobs."""
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    remote = not networks.is_trusted(request, c.settings.http)
    return _page(
        request,
        "studio.html",
        {
            "page": "studio",
            "remote": remote,
            "powers": _powers(viewer.principal, remote),
            "providers": _providers(c),
            "beds": _beds(uow, c),
            "default_bed": c.settings.cad.bed_mm,
            "recent": studio.recent_jobs(uow),
            "max_prompt": MAX_PROMPT_CHARS,
            "now": c.clock(),
        },
        viewer,
    )


@router.get("/console/studio/read", response_class=HTMLResponse)
def read_prompt(
    request: Request,
    _: Caller,
    prompt: Annotated[str, Query(max_length=MAX_PROMPT_CHARS)] = "",
) -> HTMLResponse:
    """What the grammar reads in ``prompt`` (as ``POST /api/cad/read``), as the part of
    the page that shows it: nothing is built."""
    context: dict[str, Any] = {"prompt": prompt.strip()}
    if context["prompt"]:
        try:
            spec = parse_prompt(prompt)
        except UnknownPart as exc:
            context["unknown"] = exc.message
        except ValidationFailed as exc:
            context["refused"] = exc.message
        else:
            stated = [n for n in FAMILY_PARAMETERS[spec.family] if n not in spec.defaults]
            context.update(
                spec=spec,
                stated=stated,
                expected=expected_bbox(spec),
                family_words=spec.family.value.replace("_", " "),
            )
    return _fragment(request, "_studio_reading.html", **context)


def _job_context(
    uow: UnitOfWork, c: Container, job_id: UUID, principal: Principal, remote: bool
) -> dict[str, Any]:
    beds = _beds(uow, c)
    return {
        "job": studio.read_job(uow, job_id, beds),
        "beds": beds,
        "powers": _powers(principal, remote),
        "now": c.clock(),
        "poll": POLL_SECONDS,
    }


@router.get("/studio/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    job_id: UUID,
    request: Request,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    remote = not networks.is_trusted(request, c.settings.http)
    context = _job_context(uow, c, job_id, viewer.principal, remote)
    return _page(
        request,
        "studio_job.html",
        {
            "page": "studio",
            "remote": remote,
            "lineage": studio.read_lineage(uow, job_id),
            "providers": _providers(c),
            **context,
        },
        viewer,
    )


@router.get("/console/studio/jobs/{job_id}/progress", response_class=HTMLResponse)
def job_progress(
    job_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """The job's progress; it asks to be read again while the job runs."""
    context = _job_context(uow, c, job_id, caller, caller.remote)
    response = _fragment(request, "_studio_progress.html", **context)
    if context["job"].finished:
        response.headers["HX-Trigger"] = "lineage-changed"  # the lineage shows its outcome
    return response


@router.get("/console/studio/jobs/{job_id}/results/{provider}", response_class=HTMLResponse)
def provider_result(
    job_id: UUID,
    provider: str,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """One provider's slot on the job: its result once it has one (with the 3D view),
    else its state, asking to be read again."""
    context = _job_context(uow, c, job_id, caller, caller.remote)
    found = next((r for r in context["job"].results if r.provider == provider), None)
    if found is None:
        raise NotFound(f"provider {provider} on CAD job", job_id)
    return _fragment(request, "_studio_result.html", result=found, **context)


@router.get("/console/studio/jobs/{job_id}/lineage", response_class=HTMLResponse)
def job_lineage(
    job_id: UUID,
    request: Request,
    _: Caller,
    uow: UnitOfWork,
) -> HTMLResponse:
    """The job's lineage (re-read after a part is sent to a printer)."""
    if uow.get(CADJob, job_id) is None:
        raise NotFound("CAD job", job_id)
    return _fragment(request, "_studio_lineage.html", lineage=studio.read_lineage(uow, job_id))
