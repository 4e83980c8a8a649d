"""The console's operations view (issue 18, item 2): the page ``/operations`` and its
decisions list at ``/console/operations/decisions``.

How the lab's machinery is doing over the last days (``?days=``, 7 by default): routing
(the share served locally, p50/p95 latency per tier, spend per day against the
per-person budget, the cache's hit rate, and the decisions with filters), the background
job queues (by state, the oldest waiting), the devices (online by kind, the ones seen
longest ago, commands by outcome) and the print monitors' alerts by kind. Every figure is
an SQL aggregate over the window (``web/operations.py``); the charts (uPlot, loaded on this
page only) draw the per-day series the page carries as JSON.

Everyone signed in reads it; routing figures are everyone's for the safety and admin roles
and one's own for anyone else, as ``GET /api/routing/summary`` answers them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.console import _canonical_host, _fragment, _page, _viewer
from kittylab.bootstrap import Container
from kittylab.domain.enums import Tier
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.web import operations

router = APIRouter(include_in_schema=False)

Days = Annotated[int, Query(ge=1, le=90, description="How many days back the view reaches.")]
DEFAULT_DAYS = 7


def _scope(principal: Principal) -> UUID | None:
    """None (everyone's decisions) for the safety and admin roles, else the viewer's own."""
    return None if principal.reads_all_records else principal.user_id


@router.get("/operations", response_class=HTMLResponse)
def operations_page(
    request: Request,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    days: Days = DEFAULT_DAYS,
) -> Response:
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    now = c.clock()
    since = operations.window_start(now, days)
    window = operations.window_days(now, days)
    routing = operations.read_routing(
        uow,
        since,
        window,
        viewer=_scope(viewer.principal),
        daily_budget=c.settings.query.daily_budget_usd,
    )
    devices = operations.read_devices(uow, since)
    monitoring = operations.read_monitoring(uow, since)
    queues = operations.read_queues(uow, since)
    decisions = operations.read_decisions(
        uow, since, operations.DecisionFilters(), viewer=_scope(viewer.principal)
    )
    charts = operations.chart_data(window, routing, devices, monitoring)
    return _page(
        request,
        "operations.html",
        {
            "page": "operations",
            "days": days,
            "since": since,
            "now": now,
            "routing": routing,
            "queues": queues,
            "devices": devices,
            "monitoring": monitoring,
            "tiers": list(Tier),
            "stale_after": c.settings.devices.offline_after_seconds,
            # Embedded in a <script type="application/json">: "</" must never close it.
            "charts_json": json.dumps(charts, separators=(",", ":")).replace("</", "<\\/"),
            **_decisions_context(decisions, days, operations.DecisionFilters()),
        },
        viewer,
    )


def _decisions_context(
    rows: list[operations.DecisionRow], days: int, filters: operations.DecisionFilters
) -> dict[str, Any]:
    shown = rows[: operations.DECISIONS_PAGE]
    older = None
    if len(rows) > operations.DECISIONS_PAGE:
        last = shown[-1]
        older = f"{last.created_at.isoformat()}_{last.id}"
    return {"decisions": shown, "older": older, "filters": filters, "days": days}


def _cursor(value: str | None) -> tuple[datetime, UUID] | None:
    if not value:
        return None
    try:
        at, decision_id = value.rsplit("_", 1)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("no time zone")
        return parsed, UUID(decision_id)
    except ValueError:
        raise ValidationFailed("before", "is not a cursor this list gave") from None


@router.get("/console/operations/decisions", response_class=HTMLResponse)
def decisions_fragment(
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    days: Days = DEFAULT_DAYS,
    tier: Annotated[str | None, Query(max_length=16)] = None,
    cache: Annotated[str | None, Query(pattern="^(hit|miss)?$")] = None,
    escalated: bool = False,
    person: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    """The routing decisions of the window that pass the filters, newest first, a page at
    a time (``before``: the cursor the previous page gave)."""
    try:
        chosen = Tier(tier) if tier else None  # the form's "any tier" sends an empty value
    except ValueError:
        raise ValidationFailed("tier", f"must be one of {', '.join(Tier)}") from None
    filters = operations.DecisionFilters(
        tier=chosen,
        cache=cache or None,
        escalated=escalated,
        person=(person or "").strip() or None,
        before=_cursor(before),
    )
    since = operations.window_start(c.clock(), days)
    rows = operations.read_decisions(uow, since, filters, viewer=_scope(caller))
    return _fragment(
        request,
        "_operations_decisions.html",
        **_decisions_context(rows, days, filters),
        appending=filters.before is not None,
    )
