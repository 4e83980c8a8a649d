"""``/api/safety``: safety events, read by everyone involved, approved with signatures by
the roles the policy names, denied by the safety and admin roles."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.tables import SafetyEvent
from kittylab.api.auth import Caller, SafetyCaller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.schemas import SafetyApprove, SafetyDeny, SafetyEventOut, SafetyEventView
from kittylab.bootstrap import Container
from kittylab.domain.enums import SafetyEventType, SafetyStatus
from kittylab.domain.errors import PermissionDenied
from kittylab.manifest import review
from kittylab.safety import workflow

router = APIRouter(prefix="/api/safety", tags=["safety"])


@router.get("/events", response_model=Page[SafetyEventOut])
def list_events(
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: SafetyStatus | None = None,
    event_type: Annotated[SafetyEventType | None, Query(alias="eventType")] = None,
    device_id: Annotated[UUID | None, Query(alias="deviceId")] = None,
    zone_id: Annotated[UUID | None, Query(alias="zoneId")] = None,
) -> Page[SafetyEventOut]:
    stmt = where_equal(
        select(SafetyEvent),
        (SafetyEvent.status, status),
        (SafetyEvent.event_type, event_type),
        (SafetyEvent.device_id, device_id),
        (SafetyEvent.zone_id, zone_id),
    )
    if not caller.reads_all_records:
        stmt = stmt.where(SafetyEvent.initiated_by == caller.user_id)
    return paginate(uow, stmt, SafetyEvent.id, cursor, limit, SafetyEventOut.model_validate)


@router.get("/events/{event_id}", response_model=SafetyEventView)
def get_event(
    event_id: UUID, caller: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> dict[str, Any]:
    """The event, for the safety and admin roles and for the person who asked: what it is
    for, who approved it, and what it still ``missing``."""
    event = workflow.get(uow, event_id)
    if not caller.reads_all_records and event.initiated_by != caller.user_id:
        raise PermissionDenied("only its initiator and the safety or admin roles read this event")
    return workflow.view(uow, event, c.clock(), _context(c).presence_ttl)


@router.post(
    "/events/{event_id}/approve",
    response_model=SafetyEventView,
    responses={
        403: {"description": "The approval does not count; the problem says why."},
        409: {"description": "The event is already decided or has expired."},
    },
)
def approve_event(
    event_id: UUID,
    body: SafetyApprove,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> dict[str, Any]:
    """Add your signed approval. Sign the event's canonical payload with your registered
    key (``kittylab approve EVENT --key FILE`` does it all). When it completes the
    requirements the event is ``approved`` and its command is dispatched, exactly once. A
    refused approval is recorded in the audit log and leaves nothing else behind. Each
    approval is published on MQTT ``kitty/safety/<eventId>`` once it commits."""
    context = _context(c)
    outcome = workflow.approve(
        uow,
        event_id,
        caller,
        workflow.ApprovalRequest(
            nonce=body.nonce,
            signature=body.signature,
            signed_payload=body.signed_payload,
            key_id=body.key_id,
            ppe=tuple(body.ppe),
        ),
        c.clock(),
        context,
        jobs=c.jobs,
        bus=c.bus,
        held_change=review.HELD_LAB_CHANGES,
    )
    return workflow.view(uow, outcome.event, c.clock(), context.presence_ttl)


@router.post("/events/{event_id}/deny", response_model=SafetyEventView)
def deny_event(
    event_id: UUID,
    body: SafetyDeny,
    caller: SafetyCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> dict[str, Any]:
    """Refuse a pending hazardous request; its command fails and nothing is sent. 409 when
    it is already decided. The decision is published on MQTT ``kitty/safety/<eventId>``."""
    context = _context(c)
    event = workflow.deny(
        uow,
        event_id,
        by=caller.user_id,
        reason=body.reason,
        now=c.clock(),
        context=context,
        bus=c.bus,
    )
    return workflow.view(uow, event, c.clock(), context.presence_ttl)


def _context(c: Container) -> workflow.SafetyContext:
    return bootstrap.safety_context(c.settings)
