"""Deciding safety events. Denial needs no signature: refusing is always safe."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import SafetyEvent
from kittylab.domain.enums import SafetyStatus
from kittylab.domain.errors import NotFound
from kittylab.domain.sanitize import sanitize_text
from kittylab.domain.state_machines import SAFETY_TRANSITIONS, transition


def get(session: Session, event_id: UUID, *, for_update: bool = False) -> SafetyEvent:
    event = session.get(SafetyEvent, event_id, with_for_update=for_update)
    if event is None:
        raise NotFound("safety event", event_id)
    return event


def deny(session: Session, event_id: UUID, *, by: UUID, reason: str, now: datetime) -> SafetyEvent:
    event = get(session, event_id, for_update=True)
    event.status = transition("safety event", SAFETY_TRANSITIONS, event.status, SafetyStatus.DENIED)
    event.reason = sanitize_text(reason, 2000)
    event.resolved_at = now
    event.details = {**event.details, "denied_by": str(by)}
    return event
