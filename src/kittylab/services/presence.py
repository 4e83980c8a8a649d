"""Presence observations and the question "who is in this zone now"."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import User, Zone, ZonePresence
from kittylab.domain.enums import PresenceSource, PresenceStatus
from kittylab.domain.errors import NotFound
from kittylab.domain.zones import PresenceObservation, is_present


def record_manual(
    session: Session, *, zone_id: UUID, user_id: UUID, status: PresenceStatus, now: datetime
) -> ZonePresence:
    if session.get(Zone, zone_id) is None:
        raise NotFound("zone", zone_id)
    if session.get(User, user_id) is None:
        raise NotFound("user", user_id)
    row = ZonePresence(
        zone_id=zone_id,
        user_id=user_id,
        source=PresenceSource.MANUAL,
        status=status,
        observed_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _observations(
    session: Session, zone_id: UUID, since: datetime, user_id: UUID | None = None
) -> list[PresenceObservation]:
    stmt = select(ZonePresence).where(
        ZonePresence.zone_id == zone_id, ZonePresence.observed_at >= since
    )
    if user_id is not None:
        stmt = stmt.where(ZonePresence.user_id == user_id)
    return [
        PresenceObservation(r.user_id, r.zone_id, r.source, r.status, r.observed_at)
        for r in session.scalars(stmt)
    ]


def user_is_present(
    session: Session, user_id: UUID, zone_id: UUID, now: datetime, ttl: timedelta
) -> bool:
    return is_present(
        _observations(session, zone_id, now - ttl, user_id), user_id, zone_id, now, ttl
    )


def present_users(session: Session, zone_id: UUID, now: datetime, ttl: timedelta) -> list[UUID]:
    observations = _observations(session, zone_id, now - ttl)
    users = {o.user_id for o in observations}
    return sorted(u for u in users if is_present(observations, u, zone_id, now, ttl))
