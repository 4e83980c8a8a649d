"""The safety desk's approvals (issue 17, item 5): the page ``/safety`` and its actions
under ``/console/safety/…``.

Pending safety events as the API reads them (``workflow.view``: who asked, the device, the
zone, the policy and exactly what is still missing), denied with a reason
(``workflow.deny``) or approved with a passkey: the page asks the server for the event's
canonical approval payload with a fresh nonce, the authenticator signs its SHA-256 as the
WebAuthn challenge (user verification required), and the assertion goes through
``workflow.approve`` as a ``webauthn:`` signature (``safety.passkey_approvals``), so every
rule of a signed approval holds: distinct approvers, roles, presence, PPE, nonce, expiry,
locks, trusted networks.

A passkey approves once it is an approval key (``confirmations.py``). A held lab change
(a ``policy_change`` event) shows what it would change, field by field
(``web.lab_change``), and is approved or denied here like a held command.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import webauthn
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field, StringConstraints
from sqlalchemy import select
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

from kittylab.adapters.db.tables import Passkey, SafetyEvent, Zone
from kittylab.api import web_auth
from kittylab.api.auth import Caller, SafetyCaller, UnitOfWork, container
from kittylab.api.routers.console import Viewer, templates
from kittylab.api.routers.console_safety import desk
from kittylab.api.schemas import StrictInput
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role, SafetyEventType, SafetyStatus
from kittylab.domain.principal import Principal
from kittylab.manifest import review
from kittylab.safety import passkey_approvals, workflow
from kittylab.safety.approval_payload import NONCE_PATTERN
from kittylab.web import lab_change

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
    change: lab_change.HeldChange | None
    """A held lab change (``policy_change``): what it would change."""


def _card(session: UnitOfWork, event: SafetyEvent, viewer: Principal, c: Container) -> Card:
    view = workflow.view(session, event, c.clock(), desk.context(c).presence_ttl)
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
        change=lab_change.held_change(event.details)
        if event.event_type is SafetyEventType.POLICY_CHANGE
        else None,
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


# --- the page ------------------------------------------------------------------------------


@router.get("/safety", response_class=HTMLResponse)
def safety_page(
    request: Request, viewer: Viewer, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The safety desk's first tab: pending events (held commands and held lab changes)
    with their actions, and the recent decisions."""
    principal = desk.viewing(request, viewer.principal, c)
    return desk.page(
        request,
        "safety.html",
        "approvals",
        {
            "cards": [_card(uow, e, principal, c) for e in _events(uow, principal, pending=True)],
            "recent": [_card(uow, e, principal, c) for e in _events(uow, principal, pending=False)],
        },
        viewer,
        principal,
        uow,
        c,
    )


@router.get("/console/safety/pending", response_class=HTMLResponse)
def pending_fragment(
    request: Request, caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> HTMLResponse:
    """The pending events again (after an approval, or every few seconds)."""
    cards = [_card(uow, e, caller, c) for e in _events(uow, caller, pending=True)]
    return templates.TemplateResponse(
        request,
        "_safety_pending.html",
        {"cards": cards, "now": c.clock(), "refresh_seconds": desk.REFRESH_SECONDS},
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
        context=desk.context(c),
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
    context = desk.context(c)
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
