"""The admin's wall terminals (issue 18, item 3): ``/terminals`` lists them; a tablet's
pairing code is confirmed for a zone at ``/console/terminals/pair`` and a terminal is
revoked at ``/console/terminals/{id}/revoke`` (``POST /api/terminals/…`` is the same for
programs). Admins only, from the lab's trusted networks (the remote rule refuses the
writes before they run)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from kittylab.adapters.db.tables import Zone
from kittylab.api.auth import UnitOfWork, container, require
from kittylab.api.routers.console import Viewer, _fragment, _page
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.errors import DomainError
from kittylab.domain.principal import Principal
from kittylab.people import terminals

router = APIRouter(include_in_schema=False)

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Wired = Annotated[Container, Depends(container)]


def _zones(uow: UnitOfWork) -> list[Zone]:
    return list(uow.scalars(select(Zone).order_by(Zone.name)))


@router.get("/terminals", response_class=HTMLResponse)
def terminals_page(request: Request, viewer: Viewer, uow: UnitOfWork) -> HTMLResponse:
    """Every paired and revoked terminal; admins also pair and revoke."""
    is_admin = viewer.principal.has_any(Role.ADMIN)
    return _page(
        request,
        "terminals.html",
        {
            "page": "terminals",
            "is_admin": is_admin,
            "zones": _zones(uow),
            "rows": terminals.list_terminals(uow) if is_admin else [],
        },
        viewer,
    )


@router.post("/console/terminals/pair", response_class=HTMLResponse)
def pair(
    request: Request,
    caller: Admin,
    uow: UnitOfWork,
    c: Wired,
    code: Annotated[str, Form(max_length=32)],
    zone_id: Annotated[UUID, Form(alias="zoneId")],
    name: Annotated[str, Form(max_length=100)] = "",
) -> HTMLResponse:
    """Confirm the code a tablet shows, for a zone; the list comes back with the outcome
    (a refusal is said where the form is, and nothing changes)."""
    outcome: tuple[str, str]
    try:
        with uow.begin_nested():
            terminal = terminals.pair(
                uow, code=code, zone_id=zone_id, name=name, actor=caller, now=c.clock()
            )
        outcome = ("ok", f"Paired: {terminal.name}. The tablet shows its zone in a moment.")
    except DomainError as refused:
        outcome = ("error", f"Not paired: {getattr(refused, 'message', refused)}")
    return _fragment(
        request, "_terminals_list.html", rows=terminals.list_terminals(uow), outcome=outcome
    )


@router.post("/console/terminals/{terminal_id}/revoke", response_class=HTMLResponse)
def revoke(
    terminal_id: UUID, request: Request, caller: Admin, uow: UnitOfWork, c: Wired
) -> HTMLResponse:
    """Unpair a terminal for good (whoever is tapped in on it is signed out)."""
    terminal = terminals.revoke(uow, terminal_id, actor=caller, now=c.clock())
    return _fragment(
        request,
        "_terminals_list.html",
        rows=terminals.list_terminals(uow),
        outcome=("ok", f"Revoked: {terminal.name}. Its tablet is back to a pairing code."),
    )
