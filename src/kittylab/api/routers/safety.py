"""Safety events: read by everyone involved, denied by the safety and admin roles.
(Approval needs signatures and lands with the safety service.)"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from kittylab.adapters.db.tables import SafetyEvent
from kittylab.api.auth import Caller, SafetyCaller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.schemas import SafetyDeny, SafetyEventOut
from kittylab.bootstrap import Container
from kittylab.domain import topics
from kittylab.domain.enums import SafetyEventType, SafetyStatus
from kittylab.domain.errors import PermissionDenied
from kittylab.services import safety_events

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


@router.get("/events/{event_id}", response_model=SafetyEventOut)
def get_event(event_id: UUID, caller: Caller, uow: UnitOfWork) -> SafetyEvent:
    """The event, for the safety and admin roles and for the person who asked."""
    event = safety_events.get(uow, event_id)
    if not caller.reads_all_records and event.initiated_by != caller.user_id:
        raise PermissionDenied("only its initiator and the safety or admin roles read this event")
    return event


@router.post("/events/{event_id}/deny", response_model=SafetyEventOut)
def deny_event(
    event_id: UUID,
    body: SafetyDeny,
    caller: SafetyCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> SafetyEvent:
    """Refuse a pending hazardous request. 409 when it is already decided. The decision is
    published on MQTT ``kitty/safety/<eventId>`` once stored."""
    event = safety_events.deny(uow, event_id, by=caller.user_id, reason=body.reason, now=c.clock())
    uow.commit()
    if c.bus is not None:
        c.bus.publish(
            topics.safety(event.id),
            {
                "eventId": str(event.id),
                "type": event.event_type.value,
                "status": event.status.value,
                "deviceId": str(event.device_id) if event.device_id else None,
                "at": c.clock().isoformat(),
            },
        )
    return event
