"""``/api/zones``: the lab's zones, who is present in one now, and a zone's stop."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from kittylab.adapters.db.tables import Zone
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import StopAccepted, ZoneOccupancy, ZoneOut, stop_accepted
from kittylab.bootstrap import Container
from kittylab.domain.enums import HazardLevel, PresenceSource
from kittylab.domain.zones import presence_sources, requires_dual_confirmation
from kittylab.people import presence
from kittylab.safety import stop

router = APIRouter(prefix="/api/zones", tags=["lab"])


def _zone_out(zone: Zone) -> ZoneOut:
    return ZoneOut(
        id=zone.id,
        name=zone.name,
        hazard_level=zone.hazard_level,
        requires_ppe=zone.requires_ppe,
        requires_dual_confirmation=requires_dual_confirmation(zone.hazard_level),
        unifi_door_ids=zone.unifi_door_ids,
        presence_sources=_sources(zone),
        created_at=zone.created_at,
    )


def _sources(zone: Zone) -> list[PresenceSource]:
    counting = presence_sources(zone.hazard_level, zone.presence_sources)
    return [s for s in PresenceSource if s in counting]


@router.get("", response_model=Page[ZoneOut])
def list_zones(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    hazard_level: Annotated[HazardLevel | None, Query(alias="hazardLevel")] = None,
) -> Page[ZoneOut]:
    stmt = where_equal(select(Zone), (Zone.hazard_level, hazard_level))
    return paginate(uow, stmt, Zone.id, cursor, limit, _zone_out)


@router.get("/{zone_id}", response_model=ZoneOut)
def get_zone(zone_id: UUID, _: Caller, uow: UnitOfWork) -> ZoneOut:
    zone = get_or_404(uow, Zone, zone_id, "zone")
    return _zone_out(zone)


@router.get("/{zone_id}/occupancy", response_model=ZoneOccupancy)
def zone_occupancy(
    zone_id: UUID, _: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> ZoneOccupancy:
    """Who is in the zone now (newest observation present, within the TTL), and whose
    presence counts there for hazardous work (by the zone's presence sources). Visible to
    everyone signed in: knowing who is in a room is a safety matter."""
    zone = get_or_404(uow, Zone, zone_id, "zone")
    ttl = timedelta(seconds=c.settings.presence.ttl_seconds)
    now = c.clock()
    return ZoneOccupancy(
        zone_id=zone_id,
        ttl_seconds=int(ttl.total_seconds()),
        present_user_ids=presence.present_users(uow, zone_id, now, ttl),
        counting_user_ids=presence.counting_users(uow, zone_id, now, ttl),
        presence_sources=_sources(zone),
    )


@router.post("/{zone_id}/stop", status_code=202, response_model=StopAccepted)
def stop_zone(
    zone_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> StopAccepted:
    """Put every device of the zone in its safe state now (``safety.stop``): pause prints,
    cool heaters, power relays off, lock doors. Never held; operators, safety, admin."""
    result = stop.stop(
        uow, jobs=c.jobs, bus=c.bus, requester=caller, now=c.clock(), zone_id=zone_id
    )
    return stop_accepted(result)
