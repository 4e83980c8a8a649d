"""Zones, devices and access policies: the lab as KittyLab knows it."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy import or_, select

from kittylab.adapters.db.tables import AccessPolicy, Device, Zone
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import (
    DeviceOut,
    DeviceStateOut,
    PolicyOut,
    ZoneOccupancy,
    ZoneOut,
)
from kittylab.bootstrap import Container
from kittylab.devices import telemetry
from kittylab.domain.enums import DeviceKind, HazardLevel, OnlineState
from kittylab.domain.zones import requires_dual_confirmation
from kittylab.people import presence

router = APIRouter(prefix="/api", tags=["lab"])


def _zone_out(zone: Zone) -> ZoneOut:
    return ZoneOut(
        id=zone.id,
        name=zone.name,
        hazard_level=zone.hazard_level,
        requires_ppe=zone.requires_ppe,
        requires_dual_confirmation=requires_dual_confirmation(zone.hazard_level),
        unifi_door_ids=zone.unifi_door_ids,
        created_at=zone.created_at,
    )


@router.get("/zones", response_model=Page[ZoneOut])
def list_zones(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    hazard_level: Annotated[HazardLevel | None, Query(alias="hazardLevel")] = None,
) -> Page[ZoneOut]:
    stmt = where_equal(select(Zone), (Zone.hazard_level, hazard_level))
    return paginate(uow, stmt, Zone.id, cursor, limit, _zone_out)


@router.get("/zones/{zone_id}", response_model=ZoneOut)
def get_zone(zone_id: UUID, _: Caller, uow: UnitOfWork) -> ZoneOut:
    zone = get_or_404(uow, Zone, zone_id, "zone")
    return _zone_out(zone)


@router.get("/zones/{zone_id}/occupancy", response_model=ZoneOccupancy)
def zone_occupancy(
    zone_id: UUID, _: Caller, uow: UnitOfWork, c: Annotated[Container, Depends(container)]
) -> ZoneOccupancy:
    """Who counts as present in the zone now (newest observation present, within the TTL)."""
    get_or_404(uow, Zone, zone_id, "zone")
    ttl = timedelta(seconds=c.settings.presence.ttl_seconds)
    users = presence.present_users(uow, zone_id, c.clock(), ttl)
    return ZoneOccupancy(
        zone_id=zone_id, ttl_seconds=int(ttl.total_seconds()), present_user_ids=users
    )


@router.get("/devices", response_model=Page[DeviceOut])
def list_devices(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    kind: DeviceKind | None = None,
    zone_id: Annotated[UUID | None, Query(alias="zoneId")] = None,
    integration: Annotated[str | None, Query(max_length=64)] = None,
    online_state: Annotated[OnlineState | None, Query(alias="onlineState")] = None,
    include_retired: Annotated[bool, Query(alias="includeRetired")] = False,
    name: Annotated[str | None, Query(max_length=100, description="external id or alias")] = None,
) -> Page[DeviceOut]:
    stmt = where_equal(
        select(Device),
        (Device.kind, kind),
        (Device.zone_id, zone_id),
        (Device.integration, integration),
        (Device.online_state, online_state),
    )
    if not include_retired:
        stmt = stmt.where(Device.retired_at.is_(None))
    if name:
        stmt = stmt.where(or_(Device.external_id == name, Device.aliases.contains([name])))
    return paginate(uow, stmt, Device.id, cursor, limit, DeviceOut.model_validate)


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(device_id: UUID, _: Caller, uow: UnitOfWork) -> Device:
    return get_or_404(uow, Device, device_id, "device")


@router.get("/devices/{device_id}/state", response_model=DeviceStateOut)
def get_device_state(device_id: UUID, _: Caller, uow: UnitOfWork) -> DeviceStateOut:
    """The device's latest reported state (its newest ``state`` telemetry), with when it
    was reported; ``state`` is null until the device has reported once."""
    device = get_or_404(uow, Device, device_id, "device")
    latest = telemetry.latest_state(uow, device_id)
    return DeviceStateOut(
        device_id=device.id,
        online_state=device.online_state,
        state=latest.payload if latest else None,
        reported_at=latest.recorded_at if latest else None,
    )


@router.get("/policies", response_model=Page[PolicyOut])
def list_policies(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    zone_id: Annotated[UUID | None, Query(alias="zoneId")] = None,
    include_retired: Annotated[bool, Query(alias="includeRetired")] = False,
) -> Page[PolicyOut]:
    stmt = where_equal(select(AccessPolicy), (AccessPolicy.zone_id, zone_id))
    if not include_retired:
        stmt = stmt.where(AccessPolicy.retired_at.is_(None))
    return paginate(uow, stmt, AccessPolicy.id, cursor, limit, PolicyOut.model_validate)
