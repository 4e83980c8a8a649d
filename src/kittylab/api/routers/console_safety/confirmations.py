"""The safety desk's confirmations (issue 17, item 5; the two-person rules of issue 13):
``/safety/confirmations`` and its actions under ``/console/safety/…``.

- Your passkeys as approval keys: make one an approval key ("Use this passkey to
  approve"); it signs nothing until a second person with the safety role confirms it.
- Approval keys waiting for that second person (passkeys, and keys enrolled with
  ``kittylab keys enrol`` or the API): **Confirm** is ``POST /api/keys/{id}/confirm``,
  **Revoke** is ``POST /api/keys/{id}/revoke`` (its owner withdraws it, an admin revokes
  it).
- Role grants waiting for a second person (``people.role_grants``): **Confirm** and
  **Refuse** are ``POST /api/role-grants/{id}/confirm`` and ``…/refuse``.

Each goes through the same use case and rule as its API route (``domain.duties``: not the
owner, not the one who asked, not the grantee, the right role), and from outside the lab's
networks none of them is shown (nor accepted: every write from there is refused before
its handler runs, ``api/networks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from kittylab.adapters.db.tables import Passkey, UserKey
from kittylab.api.auth import Caller, SafetyCaller, UnitOfWork, container
from kittylab.api.routers.console import Viewer, templates
from kittylab.api.routers.console_safety import desk
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.people import role_grants
from kittylab.safety import keys, passkey_approvals
from kittylab.web import desk as boards

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class OwnPasskey:
    passkey: Passkey
    key: UserKey | None
    fingerprint: str


def _own_passkeys(session: UnitOfWork, user_id: UUID) -> list[OwnPasskey]:
    rows = session.scalars(
        select(Passkey)
        .where(Passkey.user_id == user_id, Passkey.revoked_at.is_(None))
        .order_by(Passkey.created_at)
    )
    return [
        OwnPasskey(
            p, passkey_approvals.approval_key(session, p.id), passkey_approvals.fingerprint(p)
        )
        for p in rows
    ]


@router.get("/safety/confirmations", response_class=HTMLResponse)
def confirmations_page(
    request: Request, viewer: Viewer, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """Your passkeys as approval keys; for safety and admins, the keys and role grants
    waiting for a second person."""
    principal = desk.viewing(request, viewer.principal, c)
    sees_all = principal.reads_all_records
    return desk.page(
        request,
        "safety_confirmations.html",
        "confirmations",
        {
            "own_passkeys": _own_passkeys(uow, principal.user_id),
            "waiting_keys": boards.waiting_keys(uow, principal) if sees_all else [],
            "grants": boards.pending_grants(uow, principal) if sees_all else [],
        },
        viewer,
        principal,
        uow,
        c,
    )


@router.get("/console/safety/confirmations", response_class=HTMLResponse)
def confirmations_fragment(
    request: Request,
    caller: SafetyCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """The keys and role grants waiting, again (every few seconds)."""
    return templates.TemplateResponse(
        request,
        "_safety_confirmations.html",
        {
            "waiting_keys": boards.waiting_keys(uow, caller),
            "grants": boards.pending_grants(uow, caller),
            "remote": caller.remote,
            "refresh_seconds": desk.REFRESH_SECONDS,
        },
    )


# --- approval keys ----------------------------------------------------------------------


@router.post("/console/safety/passkeys/{passkey_id}/approval-key", response_class=HTMLResponse)
def enrol_passkey(
    passkey_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """Make one of your passkeys an approval key; it signs nothing until a second person
    with the safety role confirms it."""
    passkey_approvals.enrol_passkey(
        uow, user_id=caller.user_id, passkey_id=passkey_id, now=c.clock()
    )
    own = next(p for p in _own_passkeys(uow, caller.user_id) if p.passkey.id == passkey_id)
    return templates.TemplateResponse(request, "_safety_passkey.html", {"p": own})


def _decided(request: Request, row_id: str, kind: str, title: str, text: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "_safety_decided_row.html",
        {"row_id": row_id, "kind": kind, "title": title, "text": text},
    )


@router.post("/console/safety/keys/{key_id}/confirm", response_class=HTMLResponse)
def confirm_key(
    key_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/keys/{id}/confirm``: a second person with the safety role."""
    row = keys.confirm_key(uow, key_id, by=caller.user_id, roles=caller.roles, now=c.clock())
    return _decided(
        request, f"key-{key_id}", "ok", "Confirmed:", f"{row.name} signs approvals from now on."
    )


@router.post("/console/safety/keys/{key_id}/revoke", response_class=HTMLResponse)
def revoke_key(
    key_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/keys/{id}/revoke``: its owner, or an admin."""
    row = keys.revoke_key(
        uow,
        key_id,
        actor_id=caller.user_id,
        now=c.clock(),
        allowed_owner=None if caller.has_any(Role.ADMIN) else caller.user_id,
    )
    return _decided(request, f"key-{key_id}", "refused", "Revoked:", f"{row.name} signs nothing.")


# --- role grants ------------------------------------------------------------------------


@router.post("/console/safety/role-grants/{grant_id}/confirm", response_class=HTMLResponse)
def confirm_grant(
    grant_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/role-grants/{id}/confirm``: a second admin or safety person, neither
    the one who asked nor the grantee."""
    grant = role_grants.confirm(uow, grant_id, by=caller.user_id, roles=caller.roles, now=c.clock())
    return _decided(
        request, f"grant-{grant_id}", "ok", "Granted:", f"the {grant.role.value} role, from now on."
    )


@router.post("/console/safety/role-grants/{grant_id}/refuse", response_class=HTMLResponse)
def refuse_grant(
    grant_id: UUID,
    request: Request,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/role-grants/{id}/refuse``: an admin or safety person, or the one who
    asked (withdrawing it)."""
    grant = role_grants.refuse(uow, grant_id, by=caller.user_id, roles=caller.roles, now=c.clock())
    return _decided(
        request, f"grant-{grant_id}", "refused", "Refused:", f"no {grant.role.value} role."
    )
