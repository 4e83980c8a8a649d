"""The console's safety desk (issue 17, item 5): the page ``/safety`` and its actions under
``/console/safety/…``.

Pending safety events as the API reads them (``workflow.view``: who asked, the device, the
zone, the policy and exactly what is still missing), denied with a reason
(``workflow.deny``) or approved with a passkey: the page asks the server for the event's
canonical approval payload with a fresh nonce, the authenticator signs its SHA-256 as the
WebAuthn challenge (user verification required), and the assertion goes through
``workflow.approve`` as a ``webauthn:`` signature (``safety.passkey_approvals``), so every
rule of a signed approval holds: distinct approvers, roles, presence, PPE, nonce, expiry,
locks, trusted networks.

A passkey approves once it is an approval key: its owner enrols it here ("Use this
passkey to approve"), a second person with the safety role confirms it here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import webauthn
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import escape
from pydantic import Field, StringConstraints
from sqlalchemy import select
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

from kittylab import bootstrap
from kittylab.adapters.db.tables import Passkey, SafetyEvent, User, UserKey, Zone
from kittylab.api import networks, web_auth
from kittylab.api.auth import Caller, SafetyCaller, UnitOfWork, container
from kittylab.api.routers.console import Viewer, _page, templates
from kittylab.api.schemas import StrictInput
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role, SafetyStatus
from kittylab.domain.networks import OutsideTrustedNetworks
from kittylab.domain.principal import Principal
from kittylab.manifest import review
from kittylab.safety import keys, passkey_approvals, workflow
from kittylab.safety.approval_payload import NONCE_PATTERN

router = APIRouter(include_in_schema=False)

RECENT = 10
PpeItem = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]


@dataclass(frozen=True)
class Card:
    """One safety event on the desk, with what the viewer may do about it."""

    view: dict[str, Any]
    hazard_level: str | None
    ppe_items: tuple[str, ...]
    ppe_free: bool
    """The zone requires PPE but the policy names no items: the approver says what they wear."""
    can_approve: bool
    why_not: str | None
    can_deny: bool


def _card(session: UnitOfWork, event: SafetyEvent, viewer: Principal, c: Container) -> Card:
    view = workflow.view(session, event, c.clock(), _context(c).presence_ttl)
    zone = session.get(Zone, event.zone_id) if event.zone_id else None
    requirements = workflow.requirements_of(event)
    pending = event.status is SafetyStatus.PENDING
    approved_by = {a["approver_id"] for a in view["approvals"]}
    why_not: str | None = None
    if not pending:
        why_not = "decided"
    elif viewer.remote:
        why_not = "Approvals are given from inside the lab's networks only."
    elif viewer.user_id == event.initiated_by:
        why_not = "You asked for this: someone else approves it."
    elif viewer.user_id in approved_by:
        why_not = "You approved this already."
    elif not viewer.has_any(*requirements.roles):
        names = " or ".join(sorted(r.value for r in requirements.roles))
        why_not = f"Approving this needs the {names} role."
    return Card(
        view=view,
        hazard_level=zone.hazard_level.value if zone else None,
        ppe_items=requirements.ppe,
        ppe_free=requirements.zone_ppe and not requirements.ppe,
        can_approve=why_not is None,
        why_not=why_not,
        can_deny=pending and not viewer.remote and viewer.has_any(Role.SAFETY, Role.ADMIN),
    )


def _events(session: UnitOfWork, viewer: Principal, *, pending: bool) -> list[SafetyEvent]:
    stmt = select(SafetyEvent)
    if pending:
        stmt = stmt.where(SafetyEvent.status == SafetyStatus.PENDING).order_by(
            SafetyEvent.created_at
        )
    else:
        stmt = (
            stmt.where(SafetyEvent.status != SafetyStatus.PENDING)
            .order_by(SafetyEvent.created_at.desc())
            .limit(RECENT)
        )
    if not viewer.reads_all_records:
        stmt = stmt.where(SafetyEvent.initiated_by == viewer.user_id)
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class OwnPasskey:
    passkey: Passkey
    key: UserKey | None
    fingerprint: str


@dataclass(frozen=True)
class WaitingKey:
    key: UserKey
    owner: str
    kind: str
    fingerprint: str | None
    own: bool


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


def _waiting_keys(session: UnitOfWork, viewer: Principal) -> list[WaitingKey]:
    rows = session.execute(
        select(UserKey, User.display_name)
        .join(User, User.id == UserKey.user_id)
        .where(UserKey.awaiting_confirmation.is_(True), UserKey.revoked_at.is_(None))
        .order_by(UserKey.created_at)
    ).all()
    found = []
    for key, owner in rows:
        passkey = session.get(Passkey, key.passkey_id) if key.passkey_id else None
        parsed = keys.describe(key) if passkey is None else None
        found.append(
            WaitingKey(
                key=key,
                owner=owner,
                kind="passkey" if passkey else (parsed.kind.label if parsed else "?"),
                fingerprint=passkey_approvals.fingerprint(passkey)
                if passkey
                else (parsed.fingerprint if parsed else None),
                own=key.user_id == viewer.user_id,
            )
        )
    return found


def _context(c: Container) -> workflow.SafetyContext:
    return bootstrap.safety_context(c.settings)


def _viewing(request: Request, viewer: Principal, c: Container) -> Principal:
    """The viewer as the rules see this request: remote outside the trusted networks."""
    if networks.is_trusted(request, c.settings.http):
        return viewer
    return Principal(viewer.user_id, viewer.username, viewer.roles, remote=True)


# --- the page ------------------------------------------------------------------------------


@router.get("/safety", response_class=HTMLResponse)
def safety_page(
    request: Request, viewer: Viewer, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The safety desk: pending events with their actions, recent decisions, your passkeys
    as approval keys, and keys waiting for a second safety person."""
    principal = _viewing(request, viewer.principal, c)
    return _page(
        request,
        "safety.html",
        {
            "page": "safety",
            "remote": principal.remote,
            "cards": [_card(uow, e, principal, c) for e in _events(uow, principal, pending=True)],
            "recent": [_card(uow, e, principal, c) for e in _events(uow, principal, pending=False)],
            "own_passkeys": _own_passkeys(uow, principal.user_id),
            "waiting_keys": _waiting_keys(uow, principal) if principal.reads_all_records else [],
            "confirms": principal.has_any(Role.SAFETY) and not principal.remote,
            "now": c.clock(),
        },
        viewer,
    )


@router.get("/console/safety/pending", response_class=HTMLResponse)
def pending_fragment(
    request: Request, caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The pending events again (after an approval, or every few seconds)."""
    cards = [_card(uow, e, caller, c) for e in _events(uow, caller, pending=True)]
    return templates.TemplateResponse(
        request, "_safety_pending.html", {"cards": cards, "now": c.clock()}
    )


@router.get("/console/safety/recent", response_class=HTMLResponse)
def recent_fragment(
    request: Request, caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The last decisions again (after an approval or a denial)."""
    recent = [_card(uow, e, caller, c) for e in _events(uow, caller, pending=False)]
    return templates.TemplateResponse(request, "_safety_recent.html", {"recent": recent})


# --- deny -----------------------------------------------------------------------------------


@router.post("/console/safety/events/{event_id}/deny", response_class=HTMLResponse)
def deny(
    event_id: UUID,
    request: Request,
    caller: SafetyCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
) -> HTMLResponse:
    """``POST /api/safety/events/{id}/deny``: the command fails, nothing is sent."""
    event = workflow.deny(
        uow,
        event_id,
        by=caller.user_id,
        reason=reason,
        now=c.clock(),
        context=_context(c),
        bus=c.bus,
    )
    return templates.TemplateResponse(
        request, "_safety_event.html", {"card": _card(uow, event, caller, c), "now": c.clock()}
    )


# --- approve with a passkey -------------------------------------------------------------------


class ApproveStart(StrictInput):
    pass


class ApproveFinish(StrictInput):
    nonce: Annotated[str, StringConstraints(pattern=NONCE_PATTERN.pattern)]
    payload: Annotated[str, StringConstraints(max_length=4096)]
    credential: dict[str, Any] = Field(description="The browser's PublicKeyCredential as JSON.")
    ppe: list[PpeItem] = Field(default_factory=list, max_length=32)


@router.post("/console/safety/events/{event_id}/approve/options")
def approve_options(
    event_id: UUID,
    body: ApproveStart,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> JSONResponse:
    """The event's canonical approval payload with a fresh nonce, and the WebAuthn options
    whose challenge is its SHA-256: what the approver's passkey signs. Nothing is stored;
    the server rebuilds the payload from the event when the assertion comes back."""
    event = workflow.get(uow, event_id)
    nonce = secrets.token_urlsafe(24)
    payload = workflow.expected_payload(uow, event, nonce).canonical()
    own = uow.scalars(
        select(Passkey.credential_id).where(
            Passkey.user_id == caller.user_id, Passkey.revoked_at.is_(None)
        )
    ).all()
    options = webauthn.generate_authentication_options(
        rp_id=web_auth.relying_party(c.settings.console).id,
        challenge=passkey_approvals.challenge_for(payload),
        timeout=passkey_approvals.CEREMONY_MS,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(i)) for i in own
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return JSONResponse(
        {"nonce": nonce, "payload": payload.decode(), "publicKey": options_to_json_dict(options)},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/console/safety/events/{event_id}/approve")
def approve(
    event_id: UUID,
    body: ApproveFinish,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> JSONResponse:
    """``POST /api/safety/events/{id}/approve`` with the passkey's assertion as the
    signature; a refusal is the API's problem (403/409) with its reason."""
    context = _context(c)
    outcome = workflow.approve(
        uow,
        event_id,
        caller,
        workflow.ApprovalRequest(
            nonce=body.nonce,
            signature=passkey_approvals.signature_text(body.credential),
            signed_payload=body.payload,
            ppe=tuple(body.ppe),
        ),
        c.clock(),
        context,
        jobs=c.jobs,
        bus=c.bus,
        held_change=review.HELD_LAB_CHANGES,
    )
    view = workflow.view(uow, outcome.event, c.clock(), context.presence_ttl)
    message = (
        "Approved: the request is complete and is being carried out."
        if outcome.approved
        else "Your approval is recorded; still missing: " + "; ".join(view["missing"])
    )
    return JSONResponse({"approved": outcome.approved, "message": message})


# --- approval keys ----------------------------------------------------------------------------


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
    if caller.remote:
        raise OutsideTrustedNetworks("enrolling an approval key")
    passkey_approvals.enrol_passkey(
        uow, user_id=caller.user_id, passkey_id=passkey_id, now=c.clock()
    )
    own = next(p for p in _own_passkeys(uow, caller.user_id) if p.passkey.id == passkey_id)
    return templates.TemplateResponse(request, "_safety_passkey.html", {"p": own})


@router.post("/console/safety/keys/{key_id}/confirm", response_class=HTMLResponse)
def confirm_key(
    key_id: UUID,
    caller: SafetyCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> HTMLResponse:
    """``POST /api/keys/{id}/confirm``: a second person with the safety role."""
    if caller.remote:
        raise OutsideTrustedNetworks("confirming an approval key")
    row = keys.confirm_key(uow, key_id, by=caller.user_id, roles=caller.roles, now=c.clock())
    return HTMLResponse(
        f'<td colspan="5" class="outcome ok"><strong>Confirmed:</strong> {escape(row.name)} '
        "signs approvals from now on.</td>"
    )
