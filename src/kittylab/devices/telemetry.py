"""Telemetry ingest: size-checked, resolved to devices, stored raw in one batch.

A batch costs a constant number of statements whatever its size: one query for its
devices, one ``COPY`` for its rows, one UPDATE for the devices' ``last_seen``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import DateTime, bindparam, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PGUUID
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, TelemetryEvent
from kittylab.adapters.db.telemetry_copy import TelemetryRow, copy_telemetry
from kittylab.domain.enums import OnlineState
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from kittylab.domain.records import (
    MAX_TELEMETRY_DEPTH,
    check_recorded_at,
    check_telemetry_depth,
    check_telemetry_size,
    check_telemetry_topic,
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


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Compact JSON, as stored; one encoder for all (``json.dumps`` with options builds one
per call)."""

_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""``\\u0000`` as an escape in JSON text (an even run of backslashes before it), not a
literal backslash followed by ``u0000``."""


def payload_json(payload: Any, field: str = "payload") -> tuple[str, int]:
    """The payload as compact JSON text, the form it is stored in, and its size in UTF-8
    bytes. A payload PostgreSQL's ``jsonb`` cannot hold (a lone surrogate, NaN or
    Infinity, a NUL character, absurd nesting) is refused here, before it could fail the
    whole batch it arrived in."""
    try:
        text = _JSON.encode(payload)
        size = len(text.encode())
    except (UnicodeEncodeError, RecursionError, ValueError):
        raise ValidationFailed(
            field, "is not storable JSON (invalid text, NaN or Infinity, or nested too deeply)"
        ) from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValidationFailed(field, "cannot contain NUL characters")
    return text, size


def payload_size(payload: Any, field: str = "payload") -> int:
    """Bytes of the payload as compact UTF-8 JSON (see ``payload_json``)."""
    return payload_json(payload, field)[1]


def store_batch(session: Session, events: list[IncomingEvent], now: datetime) -> int:
    """Validate every event first, then insert all of them; nothing is stored when one is
    refused, so a client can resend the corrected batch without duplicates."""
    texts = [_check_event(event, f"events.{index}", now) for index, event in enumerate(events)]
    devices = _DeviceLookup.load(session, events)
    rows = [
        (devices.resolve(index, event), event.topic, text, event.recorded_at or now)
        for index, (event, text) in enumerate(zip(events, texts, strict=True))
    ]
    return _write(session, rows)


@dataclass(frozen=True)
class StreamResult:
    stored: int
    rejected: dict[str, int]
    """Refused events by reason: ``too_large``, ``invalid``, ``unknown_device``."""


def store_stream(session: Session, events: list[IncomingEvent], now: datetime) -> StreamResult:
    """Store what is valid in a stream of events (MQTT) and count the rest by reason.

    Unlike an API batch, a stream has no sender to answer: one bad event must not cost
    the others, so each is judged on its own (against devices looked up once for all)."""
    rejected: dict[str, int] = {}
    checked: list[tuple[IncomingEvent, str]] = []
    for event in events:
        try:
            checked.append((event, _check_event(event, "payload", now)))
        except PayloadTooLarge:
            rejected["too_large"] = rejected.get("too_large", 0) + 1
        except ValidationFailed:
            rejected["invalid"] = rejected.get("invalid", 0) + 1
            TELEMETRY_EVENTS.labels("rejected_invalid").inc()
    devices = _DeviceLookup.load(session, [event for event, _ in checked])
    rows: list[TelemetryRow] = []
    for index, (event, text) in enumerate(checked):
        try:
            device_id = devices.resolve(index, event)
        except ValidationFailed:
            rejected["unknown_device"] = rejected.get("unknown_device", 0) + 1
            TELEMETRY_EVENTS.labels("rejected_unknown_device").inc()
            continue
        rows.append((device_id, event.topic, text, event.recorded_at or now))
    return StreamResult(_write(session, rows), rejected)


def _check_event(event: IncomingEvent, at: str, now: datetime) -> str:
    """Refuse what cannot be stored; return the payload's JSON text for the writer."""
    field = f"{at}.payload" if at != "payload" else at
    text, size = payload_json(event.payload, field)
    try:
        check_telemetry_size(size, field)
    except PayloadTooLarge:
        TELEMETRY_EVENTS.labels("rejected_too_large").inc()
        raise
    # Nesting depth is at most the number of opening brackets in the text (brackets in
    # strings only overcount), so the walk over the payload is needed only past that.
    if text.count("{") + text.count("[") > MAX_TELEMETRY_DEPTH:
        check_telemetry_depth(event.payload, field)
    check_telemetry_topic(event.topic, f"{at}.topic" if at != "payload" else "topic")
    if event.recorded_at is not None:
        check_recorded_at(event.recorded_at, now, f"{at}.recordedAt")
    return text


def _write(session: Session, rows: list[TelemetryRow]) -> int:
    if not rows:
        return 0
    copy_telemetry(session, rows)
    latest: dict[UUID, datetime] = {}
    for device_id, _, _, recorded_at in rows:
        seen = latest.get(device_id)
        if seen is None or recorded_at > seen:
            latest[device_id] = recorded_at
    _touch_devices(session, latest)
    TELEMETRY_EVENTS.labels("stored").inc(len(rows))
    return len(rows)


def _touch_devices(session: Session, latest: dict[UUID, datetime]) -> None:
    """One statement for all the batch's devices. ``last_seen`` never moves backwards. A
    device that reports is online again, unless it is in fault: only its integration
    clears a fault, not any report. Rows with nothing to change are not written."""
    ordered = sorted(latest.items())  # one lock order for concurrent writers
    session.execute(
        _TOUCH,
        {"ids": [device for device, _ in ordered], "seen": [seen for _, seen in ordered]},
    )


# Arrays, not a VALUES list: the statement is the same for every batch, so it is compiled
# once and cached.
_SEEN = (
    func.unnest(
        bindparam("ids", type_=ARRAY(PGUUID(as_uuid=True))),
        bindparam("seen", type_=ARRAY(DateTime(timezone=True))),
    )
    .table_valued("device_id", "seen")
    .render_derived(name="seen")
)
_TOUCH = (
    update(Device)
    .where(Device.id == _SEEN.c.device_id)
    .where(
        or_(
            Device.last_seen.is_(None),
            Device.last_seen < _SEEN.c.seen,
            Device.online_state == OnlineState.OFFLINE,
        )
    )
    .values(
        # GREATEST ignores NULL: a first report sets last_seen.
        last_seen=func.greatest(Device.last_seen, _SEEN.c.seen),
        online_state=case(
            (Device.online_state == OnlineState.OFFLINE, OnlineState.ONLINE),
            else_=Device.online_state,
        ),
    )
    # Devices already loaded in the session are refreshed (RETURNING their ids).
    .execution_options(synchronize_session="fetch")
)


@dataclass(frozen=True)
class _DeviceLookup:
    """The active devices a batch names, read in one query."""

    known_ids: set[UUID]
    by_ext: dict[str, dict[str, UUID]]

    @classmethod
    def load(cls, session: Session, events: list[IncomingEvent]) -> _DeviceLookup:
        wanted_ids = {e.device_id for e in events if e.device_id is not None}
        wanted_ext = {e.external_id for e in events if e.device_id is None and e.external_id}
        known_ids: set[UUID] = set()
        by_ext: dict[str, dict[str, UUID]] = {}
        if not wanted_ids and not wanted_ext:
            return cls(known_ids, by_ext)
        rows = session.execute(
            select(Device.id, Device.external_id, Device.integration).where(
                or_(Device.id.in_(wanted_ids), Device.external_id.in_(wanted_ext)),
                Device.retired_at.is_(None),
            )
        )
        for device_id, ext, integration in rows:
            if device_id in wanted_ids:
                known_ids.add(device_id)
            if ext in wanted_ext:
                by_ext.setdefault(ext, {})[integration] = device_id
        return cls(known_ids, by_ext)

    def resolve(self, index: int, event: IncomingEvent) -> UUID:
        """The event's device. An ``external_id`` is unique only within its integration,
        so one that two integrations share must name the integration."""
        if event.device_id is not None:
            if event.device_id not in self.known_ids:
                raise ValidationFailed(f"events.{index}.deviceId", "no such active device")
            return event.device_id
        if not event.external_id:
            raise ValidationFailed(f"events.{index}.deviceId", "give deviceId or externalId")
        candidates = self.by_ext.get(event.external_id, {})
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
