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
from kittylab.domain.records import check_telemetry_size

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


def payload_size(payload: Any) -> int:
    """Bytes of the payload as compact UTF-8 JSON, the form it is stored in."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def store_batch(session: Session, events: list[IncomingEvent], now: datetime) -> int:
    """Validate every event first, then insert all of them; nothing is stored when one is
    refused, so a client can resend the corrected batch without duplicates."""
    for index, event in enumerate(events):
        try:
            check_telemetry_size(payload_size(event.payload), f"events.{index}.payload")
        except PayloadTooLarge:
            TELEMETRY_EVENTS.labels("rejected_too_large").inc()
            raise
    device_ids = _resolve_devices(session, events)
    rows = [
        {
            "device_id": device_id,
            "topic": event.topic,
            "payload": event.payload,
            "recorded_at": event.recorded_at or now,
        }
        for event, device_id in zip(events, device_ids, strict=True)
    ]
    session.execute(insert(TelemetryEvent), rows)
    latest: dict[UUID, datetime] = {}
    for row in rows:
        latest[row["device_id"]] = max(
            row["recorded_at"], latest.get(row["device_id"], row["recorded_at"])
        )
    for device_id, seen in latest.items():
        # A device that reports is online; last_seen never moves backwards.
        session.execute(
            update(Device)
            .where(Device.id == device_id)
            .where((Device.last_seen.is_(None)) | (Device.last_seen < seen))
            .values(last_seen=seen, online_state=OnlineState.ONLINE)
        )
    TELEMETRY_EVENTS.labels("stored").inc(len(rows))
    return len(rows)


def _resolve_devices(session: Session, events: list[IncomingEvent]) -> list[UUID]:
    wanted_ids = {e.device_id for e in events if e.device_id is not None}
    wanted_ext = {e.external_id for e in events if e.device_id is None and e.external_id}
    known_ids = (
        set(session.scalars(select(Device.id).where(Device.id.in_(wanted_ids))))
        if wanted_ids
        else set()
    )
    by_ext: dict[str, UUID] = {}
    if wanted_ext:
        for ext, device_id in session.execute(
            select(Device.external_id, Device.id).where(
                Device.external_id.in_(wanted_ext), Device.retired_at.is_(None)
            )
        ).tuples():
            by_ext[ext] = device_id
    resolved: list[UUID] = []
    for index, event in enumerate(events):
        if event.device_id is not None:
            if event.device_id not in known_ids:
                raise ValidationFailed(f"events.{index}.deviceId", "no such device")
            resolved.append(event.device_id)
        elif event.external_id:
            if event.external_id not in by_ext:
                raise ValidationFailed(f"events.{index}.externalId", "no such device")
            resolved.append(by_ext[event.external_id])
        else:
            raise ValidationFailed(f"events.{index}.deviceId", "give deviceId or externalId")
    return resolved
