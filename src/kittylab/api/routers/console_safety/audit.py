"""The safety desk's audit log (issue 17, item 5): ``/safety/audit``, for the safety and
admin roles as ``GET /api/audit`` is.

The newest entries first, filtered by action (``lock.placed``) or prefix (``safety.*``),
a page at a time, each with who, what, on what and its details; and the state of the
log's hash chain (``GET /api/audit/verify``): verified over N entries with the head's
hash (to write down elsewhere, as an anchor), or broken at entry N and why. The chain is
walked whole, so it is checked when asked (the page asks once, after it has loaded).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from kittylab.api.auth import SafetyCaller, UnitOfWork, container
from kittylab.api.routers.audit import ACTION_FILTER
from kittylab.api.routers.console import Viewer, templates
from kittylab.api.routers.console_safety import desk
from kittylab.bootstrap import Container
from kittylab.web import desk as boards

router = APIRouter(include_in_schema=False)

ACTION_PREFIXES = (
    "safety.*",
    "lock.*",
    "presence.*",
    "stop.*",
    "key.*",
    "role.*",
    "passkey.*",
    "user.*",
    "zone.*",
    "device.*",
    "policy.*",
)
"""Offered in the filter's list (any action or prefix may be typed)."""


@router.get("/safety/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    viewer: Viewer,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    action: Annotated[str | None, Query(max_length=64, pattern=ACTION_FILTER)] = None,
    before: Annotated[int | None, Query(ge=2, le=2**62)] = None,
) -> HTMLResponse:
    principal = desk.viewing(request, viewer.principal, c)
    lines, older = (
        boards.audit_page(uow, action, before) if principal.reads_all_records else ([], None)
    )
    return desk.page(
        request,
        "safety_audit.html",
        "audit",
        {
            "lines": lines,
            "older": older,
            "action": action or "",
            "before": before,
            "prefixes": ACTION_PREFIXES,
        },
        viewer,
        principal,
        uow,
        c,
    )


@router.get("/console/safety/audit/chain", response_class=HTMLResponse)
def chain_fragment(request: Request, _: SafetyCaller, uow: UnitOfWork) -> HTMLResponse:
    """The hash chain walked now: verified, or broken at entry N."""
    return templates.TemplateResponse(
        request, "_safety_chain.html", {"chain": boards.chain_status(uow)}
    )
