"""``/api/terminals``: wall terminals (issue 18), for programs; the console's ``/terminals``
page does the same. A tablet that opens ``/terminal`` shows a one-time code; an admin pairs
it to a zone with that code, and revokes it. Admins only; the writes only from the lab's
trusted networks (``api/networks.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import Field

from kittylab.api.auth import UnitOfWork, container, require
from kittylab.api.schemas import CamelModel, StrictInput
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role, TerminalStatus
from kittylab.domain.principal import Principal
from kittylab.people import terminals

router = APIRouter(prefix="/api/terminals", tags=["terminals"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


class TerminalPair(StrictInput):
    code: str = Field(
        min_length=8,
        max_length=32,
        description="The code the tablet shows (ABCD-EFGH; case, spaces and dashes aside).",
    )
    zone_id: UUID = Field(description="The zone whose wall the tablet is on.")
    name: str = Field(
        "", max_length=100, description="What to call it; blank: the zone's name + terminal."
    )


class TerminalOut(CamelModel):
    id: UUID
    name: str
    status: TerminalStatus
    zone_id: UUID | None
    zone: str | None = Field(description="The zone's name.")
    paired_by: str | None = Field(description="Who paired it (display name).")
    paired_at: datetime | None
    last_seen_at: datetime | None = Field(description="When the tablet last asked anything.")
    revoked_at: datetime | None


def _out(row: terminals.TerminalRow) -> TerminalOut:
    t = row.terminal
    return TerminalOut(
        id=t.id,
        name=t.name,
        status=t.status,
        zone_id=t.zone_id,
        zone=row.zone_name,
        paired_by=row.paired_by,
        paired_at=t.paired_at,
        last_seen_at=t.last_seen_at,
        revoked_at=t.revoked_at,
    )


def _one(uow: UnitOfWork, terminal_id: UUID) -> TerminalOut:
    return next(_out(r) for r in terminals.list_terminals(uow) if r.terminal.id == terminal_id)


@router.get("", response_model=list[TerminalOut])
def list_terminals(_: Admin, uow: UnitOfWork) -> list[TerminalOut]:
    """Paired terminals, then revoked ones (tablets still waiting are not listed: the
    codes they show are their secrets)."""
    return [_out(r) for r in terminals.list_terminals(uow)]


@router.post(
    "/pair",
    response_model=TerminalOut,
    responses={422: {"description": "No tablet shows this code, or it has expired."}},
)
def pair_terminal(
    body: TerminalPair,
    caller: Admin,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> TerminalOut:
    """Pair the tablet that shows ``code`` to a zone (the code is spent). Audited
    ``terminal.paired``."""
    terminal = terminals.pair(
        uow, code=body.code, zone_id=body.zone_id, name=body.name, actor=caller, now=c.clock()
    )
    return _one(uow, terminal.id)


@router.post("/{terminal_id}/revoke", response_model=TerminalOut)
def revoke_terminal(
    terminal_id: UUID,
    caller: Admin,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> TerminalOut:
    """Unpair a terminal for good: its tablet goes back to a pairing code and whoever is
    tapped in on it is signed out. Audited ``terminal.revoked``."""
    terminals.revoke(uow, terminal_id, actor=caller, now=c.clock())
    return _one(uow, terminal_id)
