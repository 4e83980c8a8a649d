"""Telemetry ingest: size-checked, resolved to devices, stored raw in one batch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, TelemetryEvent
from kittylab.domain.enums import OnlineState
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from kittylab.domain.records import (
    check_recorded_at,
    check_telemetry_depth,
    check_telemetry_size,
)

STATE_TOPIC = "state"
"""The topic of a device's reported state; written by integrations only."""

TELEMETRY_EVENTS = Counter(
    "kittylab_telemetry_events_total", "Telemetry events by outcome.", ["outcome"]
)


@dataclass(frozen=True)
class IncomingEvent:
    device_id: UUID | None
    external_id: str | None
    topic: str
    payload: Any
    recorded_at: datetime | None
    integration: str | None = None


def payload_size(payload: Any, field: str = "payload") -> int:
    """Bytes of the payload as compact UTF-8 JSON, the form it is stored in. A payload
    that cannot be stored (a lone surrogate, absurd nesting) is refused here."""
    try:
        return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    except (UnicodeEncodeError, RecursionError, ValueError):
        raise ValidationFailed(
            field, "is not storable JSON (invalid text or nested too deeply)"
        ) from None


def store_batch(session: Session, events: list[IncomingEvent], now: datetime) -> int:
    """Validate every event first, then insert all of them; nothing is stored when one is
    refused, so a client can resend the corrected batch without duplicates."""
    for index, event in enumerate(events):
        _check_event(event, f"events.{index}", now)
    device_ids = _resolve_devices(session, events)
    return _insert(session, list(zip(events, device_ids, strict=True)), now)


@dataclass(frozen=True)
class StreamResult:
    stored: int
    rejected: dict[str, int]
    """Refused events by reason: ``too_large``, ``invalid``, ``unknown_device``."""


def store_stream(session: Session, events: list[IncomingEvent], now: datetime) -> StreamResult:
    """Store what is valid in a stream of events (MQTT) and count the rest by reason.

    Unlike an API batch, a stream has no sender to answer: one bad event must not cost
    the others, so each is judged on its own."""
    rejected: dict[str, int] = {}
    valid: list[IncomingEvent] = []
    for event in events:
        try:
            _check_event(event, "payload", now)
        except PayloadTooLarge:
            rejected["too_large"] = rejected.get("too_large", 0) + 1
            continue
        except ValidationFailed:
            rejected["invalid"] = rejected.get("invalid", 0) + 1
            TELEMETRY_EVENTS.labels("rejected_invalid").inc()
            continue
        valid.append(event)
    resolved: list[tuple[IncomingEvent, UUID]] = []
    for event in valid:
        try:
            [device_id] = _resolve_devices(session, [event])
        except ValidationFailed:
            rejected["unknown_device"] = rejected.get("unknown_device", 0) + 1
            TELEMETRY_EVENTS.labels("rejected_unknown_device").inc()
            continue
        resolved.append((event, device_id))
    return StreamResult(_insert(session, resolved, now) if resolved else 0, rejected)


def _check_event(event: IncomingEvent, at: str, now: datetime) -> None:
    field = f"{at}.payload" if at != "payload" else at
    try:
        check_telemetry_size(payload_size(event.payload, field), field)
    except PayloadTooLarge:
        TELEMETRY_EVENTS.labels("rejected_too_large").inc()
        raise
    check_telemetry_depth(event.payload, field)
    if event.recorded_at is not None:
        check_recorded_at(event.recorded_at, now, f"{at}.recordedAt")


def _insert(session: Session, events: list[tuple[IncomingEvent, UUID]], now: datetime) -> int:
    rows = [
        {
            "device_id": device_id,
            "topic": event.topic,
            "payload": event.payload,
            "recorded_at": event.recorded_at or now,
        }
        for event, device_id in events
    ]
    session.execute(insert(TelemetryEvent), rows)
    latest: dict[UUID, datetime] = {}
    for row in rows:
        latest[row["device_id"]] = max(
            row["recorded_at"], latest.get(row["device_id"], row["recorded_at"])
        )
    for device_id, seen in latest.items():
        # last_seen never moves backwards. A device that reports is online again, unless
        # it is in fault: only its integration clears a fault, not any report.
        session.execute(
            update(Device)
            .where(Device.id == device_id)
            .where((Device.last_seen.is_(None)) | (Device.last_seen < seen))
            .values(last_seen=seen)
        )
        session.execute(
            update(Device)
            .where(Device.id == device_id, Device.online_state == OnlineState.OFFLINE)
            .values(online_state=OnlineState.ONLINE)
        )
    TELEMETRY_EVENTS.labels("stored").inc(len(rows))
    return len(rows)


def _resolve_devices(session: Session, events: list[IncomingEvent]) -> list[UUID]:
    """Map each event to a device id. An ``external_id`` is unique only within its
    integration, so one that two integrations share must name the integration."""
    wanted_ids = {e.device_id for e in events if e.device_id is not None}
    wanted_ext = {e.external_id for e in events if e.device_id is None and e.external_id}
    known_ids: set[UUID] = set()
    if wanted_ids:
        known_ids = set(
            session.scalars(
                select(Device.id).where(Device.id.in_(wanted_ids), Device.retired_at.is_(None))
            )
        )
    by_ext: dict[str, dict[str, UUID]] = {}
    if wanted_ext:
        rows = session.execute(
            select(Device.external_id, Device.integration, Device.id).where(
                Device.external_id.in_(wanted_ext), Device.retired_at.is_(None)
            )
        )
        for ext, integration, device_id in rows:
            by_ext.setdefault(ext, {})[integration] = device_id
    return [_resolve_one(index, event, known_ids, by_ext) for index, event in enumerate(events)]


def _resolve_one(
    index: int,
    event: IncomingEvent,
    known_ids: set[UUID],
    by_ext: dict[str, dict[str, UUID]],
) -> UUID:
    if event.device_id is not None:
        if event.device_id not in known_ids:
            raise ValidationFailed(f"events.{index}.deviceId", "no such active device")
        return event.device_id
    if not event.external_id:
        raise ValidationFailed(f"events.{index}.deviceId", "give deviceId or externalId")
    candidates = by_ext.get(event.external_id, {})
    if event.integration is not None:
        candidates = {k: v for k, v in candidates.items() if k == event.integration}
    if not candidates:
        raise ValidationFailed(f"events.{index}.externalId", "no such device")
    if len(candidates) > 1:
        names = ", ".join(sorted(candidates))
        raise ValidationFailed(
            f"events.{index}.integration", f"{event.external_id} exists in {names}; name one"
        )
    return next(iter(candidates.values()))


def latest_state(session: Session, device_id: UUID) -> TelemetryEvent | None:
    """The device's newest ``state`` report, in arrival order (a client cannot backdate
    an event past it), or ``None`` before the first."""
    return session.scalars(
        select(TelemetryEvent)
        .where(TelemetryEvent.device_id == device_id, TelemetryEvent.topic == STATE_TOPIC)
        .order_by(TelemetryEvent.id.desc())
        .limit(1)
    ).first()
