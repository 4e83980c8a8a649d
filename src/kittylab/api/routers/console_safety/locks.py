"""The safety desk's locks board (issue 17, item 5): ``/safety/locks`` and its actions under
``/console/safety/locks``.

Every lock that is on, with its device, zone, holder, reason and age; place your own lock
on any device (``POST /api/devices/{id}/locks``: ``workflow.lock_out``, which also stops
the device's unsent commands), take your own off, and — the safety role only — take
someone else's off with a written reason, recorded as an override and told to its holder
(``POST /api/locks/{id}/remove`` with ``overrideReason``: ``safety.locks.remove``).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.console import Viewer, templates
from kittylab.api.routers.console_safety import desk
from kittylab.bootstrap import Container
from kittylab.domain.principal import Principal
from kittylab.safety import locks, workflow
from kittylab.web import desk as boards

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
    return templates.TemplateResponse(
        request,
        "_safety_locks.html",
        {
            **_board(session, viewer),
            "now": c.clock(),
            "refresh_seconds": desk.REFRESH_SECONDS,
            **extra,
        },
    )


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
    lock = workflow.lock_out(
        uow, device_id, caller.user_id, reason, c.clock(), notify=c.settings.notify, jobs=c.jobs
    )
    return _fragment(request, uow, caller, c, done=f"Your lock is on (lock {lock.id}).")


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
    outcome = locks.remove(
        uow,
        lock_id,
        caller,
        c.clock(),
        override_reason or None,
        notify=c.settings.notify,
        jobs=c.jobs,
    )
    done = (
        "Overridden: the lock is off and its holder is told."
        if outcome.override_event
        else "Your lock is off."
    )
    return _fragment(request, uow, caller, c, done=done)
