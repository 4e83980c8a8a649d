"""The safety desk's presence board (issue 17, item 5): ``/safety/presence`` and its
actions under ``/console/safety/presence``.

Who is in each zone now, how they were seen (door badge, network, check-in, a confirmed
check-in, a safety override), how long ago, and whether that counts there for hazardous
work (the zone's presence sources). Who is in a room is for everyone to see
(``GET /api/zones/{id}/occupancy``). You check yourself in or out of a zone here
(``POST /api/presence``: ``people.presence.record_manual``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.console import Viewer
from kittylab.api.routers.console_safety import desk
from kittylab.bootstrap import Container
from kittylab.domain.enums import PresenceStatus
from kittylab.domain.principal import Principal
from kittylab.people import presence
from kittylab.web import desk as boards

router = APIRouter(include_in_schema=False)


def _board(session: UnitOfWork, viewer: Principal, c: Container) -> dict[str, object]:
    ttl = c.settings.presence.ttl_seconds
    return {
        "zones": boards.presence_board(session, c.clock(), timedelta(seconds=ttl), viewer.user_id),
        "ttl_minutes": round(ttl / 60),
        "can_act": not viewer.remote,
    }


@router.get("/safety/presence", response_class=HTMLResponse)
def presence_page(
    request: Request, viewer: Viewer, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    principal = desk.viewing(request, viewer.principal, c)
    return desk.page(
        request,
        "safety_presence.html",
        "presence",
        _board(uow, principal, c),
        viewer,
        principal,
        uow,
        c,
    )


def _fragment(
    request: Request, session: UnitOfWork, viewer: Principal, c: Container, **extra: object
) -> HTMLResponse:
    return desk.fragment(
        request, "_safety_presence.html", {**_board(session, viewer, c), **extra}, c
    )


@router.get("/console/safety/presence", response_class=HTMLResponse)
def presence_fragment(
    request: Request, caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The board again (every few seconds)."""
    return _fragment(request, uow, caller, c)


@router.post("/console/safety/presence/{zone_id}/{status}", response_class=HTMLResponse)
def check_in_or_out(
    zone_id: UUID,
    status: Literal["present", "vacated"],
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/presence`` for yourself: ``present`` checks you in, ``vacated`` out."""
    recorded = PresenceStatus(status)
    presence.record_manual(
        uow, zone_id=zone_id, user_id=caller.user_id, status=recorded, now=c.clock()
    )
    done = "You are checked in." if recorded is PresenceStatus.PRESENT else "You are checked out."
    return _fragment(request, uow, caller, c, done=done)
