"""The safety desk's locks board (issue 17, item 5): ``/safety/locks`` and its actions under
``/console/safety/locks``.

Every lock that is on, with its device, zone, holder, reason and age; place your own lock
on any device (``POST /api/devices/{id}/locks``: ``workflow.lock_out``, which also stops
the device's unsent commands), take your own off, and — the safety role only — take
someone else's off with a written reason, recorded as an override and told to its holder
(``POST /api/locks/{id}/remove`` with ``overrideReason``: ``safety.locks.remove``).

The floor's tiles place and take off locks through the same two actions
(``/console/safety/locks/tiles/{device_id}/…``), answered with the tile's locks and its
quick actions.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.console import ACTING_ROLES, Viewer, templates
from kittylab.api.routers.console_safety import desk
from kittylab.bootstrap import Container
from kittylab.domain.errors import NotFound
from kittylab.domain.principal import Principal
from kittylab.safety import locks, workflow
from kittylab.web import desk as boards
from kittylab.web import floor

router = APIRouter(include_in_schema=False)

Reason = Annotated[str, Form(min_length=1, max_length=locks.REASON_MAX)]


def _board(session: UnitOfWork, viewer: Principal) -> dict[str, object]:
    active = boards.active_locks(session, viewer)
    return {
        "locks": active,
        "devices": boards.lockable_devices(session, active),
        "removed": boards.recently_removed(session),
        "can_act": not viewer.remote,
    }


def _fragment(
    request: Request, session: UnitOfWork, viewer: Principal, c: Container, **extra: object
) -> HTMLResponse:
    return desk.fragment(request, "_safety_locks.html", {**_board(session, viewer), **extra}, c)


@router.get("/safety/locks", response_class=HTMLResponse)
def locks_page(
    request: Request, viewer: Viewer, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    principal = desk.viewing(request, viewer.principal, c)
    return desk.page(
        request, "safety_locks.html", "locks", _board(uow, principal), viewer, principal, uow, c
    )


@router.get("/console/safety/locks", response_class=HTMLResponse)
def locks_fragment(
    request: Request, caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The board again (every few seconds)."""
    return _fragment(request, uow, caller, c)


@router.post("/console/safety/locks", response_class=HTMLResponse)
def place_lock(
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    device_id: Annotated[UUID, Form(alias="deviceId")],
    reason: Reason,
) -> HTMLResponse:
    """``POST /api/devices/{id}/locks``: your lock on the device."""
    return _fragment(request, uow, caller, c, done=_place(uow, caller, c, device_id, reason))


def _place(
    session: UnitOfWork, caller: Principal, c: Container, device_id: UUID, reason: str
) -> str:
    lock = workflow.lock_out(
        session,
        device_id,
        caller.user_id,
        reason,
        c.clock(),
        notify=c.settings.notify,
        jobs=c.jobs,
    )
    return f"Your lock is on (lock {lock.id})."


def _remove(
    session: UnitOfWork,
    caller: Principal,
    c: Container,
    lock_id: UUID,
    override_reason: str | None,
) -> str:
    outcome = locks.remove(
        session,
        lock_id,
        caller,
        c.clock(),
        override_reason or None,
        notify=c.settings.notify,
        jobs=c.jobs,
    )
    return (
        "Overridden: the lock is off and its holder is told."
        if outcome.override_event
        else "Your lock is off."
    )


@router.post("/console/safety/locks/{lock_id}/remove", response_class=HTMLResponse)
def remove_lock(
    lock_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    override_reason: Annotated[
        str | None, Form(alias="overrideReason", max_length=locks.REASON_MAX)
    ] = None,
) -> HTMLResponse:
    """``POST /api/locks/{id}/remove``: your own lock, or someone else's with a reason
    (the safety role: an override on the record, told to the lock's holder)."""
    done = _remove(uow, caller, c, lock_id, override_reason)
    return _fragment(request, uow, caller, c, done=done)


# --- on the floor's tiles ------------------------------------------------------------------


def _tile_locks(
    request: Request, session: UnitOfWork, caller: Principal, device_id: UUID, done: str
) -> HTMLResponse:
    tile = floor.read_tile(session, device_id, caller)
    if tile is None:
        raise NotFound("device", device_id)
    return templates.TemplateResponse(
        request,
        "_tile_locks.html",
        {
            "tile": tile,
            "done": done,
            "can_lock": not caller.remote,
            "can_act": not caller.remote and caller.has_any(*ACTING_ROLES),
            "oob": True,
        },
    )


@router.post("/console/safety/locks/tiles/{device_id}/place", response_class=HTMLResponse)
def place_tile_lock(
    device_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    reason: Reason,
) -> HTMLResponse:
    """A tile's "lock this device": the board's place, answered as the tile's locks."""
    done = _place(uow, caller, c, device_id, reason)
    return _tile_locks(request, uow, caller, device_id, done)


@router.post(
    "/console/safety/locks/tiles/{device_id}/{lock_id}/remove", response_class=HTMLResponse
)
def remove_tile_lock(
    device_id: UUID,
    lock_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """A tile's "remove my lock": the board's remove without an override (only your own;
    someone else's is refused by the lockout rules, 403 naming its holder)."""
    done = _remove(uow, caller, c, lock_id, None)
    return _tile_locks(request, uow, caller, device_id, done)
