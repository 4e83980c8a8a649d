"""``/api/telemetry``: storing a batch of telemetry events, and reading them back."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status
from pydantic import AwareDatetime
from sqlalchemy import select

from kittylab.adapters.db.tables import TelemetryEvent
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.schemas import TelemetryAccepted, TelemetryBatch, TelemetryOut
from kittylab.bootstrap import Container
from kittylab.devices import telemetry
from kittylab.devices.telemetry import STATE_TOPIC
from kittylab.domain.enums import Role
from kittylab.domain.errors import PermissionDenied

router = APIRouter(prefix="/api/telemetry", tags=["equipment"])

# A telemetry page stops at about this many payload bytes (64 KiB events add up fast).
PAGE_BYTES = 2 * 1024 * 1024


@router.post(
    "",
    response_model=TelemetryAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={413: {"description": "An event's payload is over 64 KiB."}},
)
def ingest_telemetry(
    body: TelemetryBatch,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> TelemetryAccepted:
    """Store a batch of telemetry events in one transaction. An event whose payload is over
    64 KiB (as compact JSON) rejects the batch with 413 naming it; it is counted in
    ``kittylab_telemetry_rejected_total``."""
    if not caller.has_any(Role.ADMIN) and any(e.topic.lower() == STATE_TOPIC for e in body.events):
        # A device's reported state is what operators act on; only integrations (an
        # admin's token, for a bridge one scoped `telemetry`: docs/configuration.md) may
        # write it, so nobody can show a locked door as unlocked.
        raise PermissionDenied(f"the {STATE_TOPIC!r} topic is written by integrations (admin)")
    events = [
        telemetry.IncomingEvent(
            e.device_id, e.external_id, e.topic, e.payload, e.recorded_at, e.integration
        )
        for e in body.events
    ]
    return TelemetryAccepted(accepted=telemetry.store_batch(uow, events, c.clock()))


@router.get("", response_model=Page[TelemetryOut])
def list_telemetry(
    _: Caller,
    uow: UnitOfWork,
    # Telemetry rows can be 64 KiB each: a page loads at most 100 of them.
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page.")] = 100,
    cursor: CursorParam = None,
    device_id: Annotated[UUID | None, Query(alias="deviceId")] = None,
    topic: Annotated[str | None, Query(max_length=256)] = None,
    # Zoned: a naive time would be read in the server's zone, silently shifting the range.
    since: Annotated[AwareDatetime | None, Query(description="At or after (inclusive).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before (exclusive).")] = None,
) -> Page[TelemetryOut]:
    stmt = where_equal(
        select(TelemetryEvent), (TelemetryEvent.device_id, device_id), (TelemetryEvent.topic, topic)
    )
    if since is not None:
        stmt = stmt.where(TelemetryEvent.recorded_at >= since)
    if until is not None:
        stmt = stmt.where(TelemetryEvent.recorded_at < until)
    return paginate(
        uow,
        stmt,
        TelemetryEvent.id,
        cursor,
        limit,
        TelemetryOut.model_validate,
        byte_budget=(lambda row: telemetry.payload_size(row.payload), PAGE_BYTES),
    )
