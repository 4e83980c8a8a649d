"""Telemetry ingest: checked, resolved to devices, stored raw in one batch.

Every event is judged on its own before it joins a batch: storable JSON (no NaN,
Infinity or NUL), finite numbers, at most 64 KiB and 32 levels deep, a storable topic and
time, an active device, and for the ``state`` topic the normalized state of the device's
kind (``domain.payload_checks``). An API batch (``store_batch``) is refused whole, naming
the event; a stream from the bus (``store_stream``) drops and counts the bad event, and the
rest of the batch and the other devices go on.

A batch costs a constant number of statements whatever its size: one query for its
devices, one ``COPY`` for its rows, one UPDATE for the devices' ``last_seen``.

A batch with a state of a device that does not report itself on the bus (a polled
integration, the API) also notifies ``kittylab_states`` on commit
(``adapters.db.change_signal``): the console shows it at once."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import DateTime, bindparam, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PGUUID
from sqlalchemy.orm import Session

from kittylab.adapters.db import change_signal
from kittylab.adapters.db.tables import Device, TelemetryEvent
from kittylab.adapters.db.telemetry_copy import TelemetryRow, copy_telemetry
from kittylab.domain.enums import DeviceKind, OnlineState
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from kittylab.domain.payload_checks import check_device_state, check_finite
from kittylab.domain.records import (
    MAX_TELEMETRY_DEPTH,
    check_recorded_at,
    check_telemetry_depth,
    check_telemetry_size,
    check_telemetry_topic,
)

STATE_TOPIC = "state"
SELF_REPORTING = frozenset({"simulated", "mqtt"})
"""Integrations whose devices publish their own state on the bus (the others are asked:
``devices.poller``)."""
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
    integration: str | frozenset[str] | None = None
    """The integration the ``external_id`` is of, or those it may be of (the bus's
    self-reporting ones: ``telemetry_ingest.BUS_INTEGRATIONS``)."""


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


_LONG_DIGITS = re.compile(r"[0-9]{309}")
"""A run of digits no float can hold (``float`` tops out near 1.8e308): only then is the
payload walked for integers too large, which the JSON encoder writes out unchanged."""


def store_batch(session: Session, events: list[IncomingEvent], now: datetime) -> int:
    """Validate every event first, then insert all of them; nothing is stored when one is
    refused, so a client can resend the corrected batch without duplicates."""
    try:
        texts = [_check_event(e, f"events.{index}", now) for index, e in enumerate(events)]
    except PayloadTooLarge:
        TELEMETRY_EVENTS.labels("rejected_too_large").inc()
        raise
    devices = _DeviceLookup.load(session, events)
    rows = []
    for index, (event, text) in enumerate(zip(events, texts, strict=True)):
        device_id = devices.resolve(index, event)
        _check_state(event, devices.kinds[device_id], f"events.{index}.payload")
        rows.append((device_id, event.topic, text, event.recorded_at or now))
    devices.announce_states(session, rows)
    return _write(session, rows)


@dataclass(frozen=True)
class Refusal:
    """One event a stream dropped: who sent it, why (a ``StreamResult`` reason) and the
    rule it broke."""

    device: str
    reason: str
    detail: str


@dataclass(frozen=True)
class StreamResult:
    stored: int
    rejected: dict[str, int]
    """Refused events by reason: ``too_large``, ``invalid`` (not storable: NaN, Infinity,
    NUL, depth, topic, time), ``unknown_device``, ``bad_state`` (not the normalized state
    of the device's kind)."""
    refusals: tuple[Refusal, ...] = field(default=(), compare=False)
    """The refused events themselves, for a (rate-limited) log."""


class RefusalLog:
    """Logs dropped events: a device and reason once per ``every_seconds`` (with how many
    were dropped since), and at most ``max_lines`` lines per window in all, since any
    client can invent device ids. Counting is the metric's job; this says who and why."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every_seconds: float = 300.0,
        max_lines: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every = every_seconds
        self._max_lines = max_lines
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._since: dict[tuple[str, str], int] = {}
        self._window_start = clock()
        self._lines = 0

    def __call__(self, refusal: Refusal) -> None:
        now = self._clock()
        if now - self._window_start >= self._every:
            # A new window: keys logged long ago may log again, and the memory is bounded.
            self._last = {k: t for k, t in self._last.items() if now - t < self._every}
            self._since = {k: n for k, n in self._since.items() if k in self._last}
            self._window_start, self._lines = now, 0
        key = (refusal.device, refusal.reason)
        last = self._last.get(key)
        if (last is not None and now - last < self._every) or self._lines >= self._max_lines:
            self._since[key] = self._since.get(key, 0) + 1
            return
        self._last[key] = now
        self._lines += 1
        dropped_since = self._since.pop(key, 0)
        self._log.warning(
            "dropped an event from %s (%s): %s%s",
            refusal.device,
            refusal.reason,
            refusal.detail,
            f" ({dropped_since} more dropped since the last notice)" if dropped_since else "",
            extra={"device": refusal.device, "reason": refusal.reason},
        )


def store_stream(session: Session, events: list[IncomingEvent], now: datetime) -> StreamResult:
    """Store what is valid in a stream of events (MQTT, polled and simulated states) and
    count the rest by reason (``kittylab_telemetry_events_total{outcome="rejected_…"}``).

    Unlike an API batch, a stream has no sender to answer: one bad event must not cost
    the others, so each is judged on its own (against devices looked up once for all)."""
    refusals: list[Refusal] = []

    def refuse(event: IncomingEvent, reason: str, problem: Exception) -> None:
        refusals.append(Refusal(_label(event), reason, str(problem)))

    checked: list[tuple[IncomingEvent, str]] = []
    for event in events:
        try:
            checked.append((event, _check_event(event, "payload", now)))
        except PayloadTooLarge as problem:
            refuse(event, "too_large", problem)
        except ValidationFailed as problem:
            refuse(event, "invalid", problem)
    devices = _DeviceLookup.load(session, [event for event, _ in checked])
    rows: list[TelemetryRow] = []
    for index, (event, text) in enumerate(checked):
        try:
            device_id = devices.resolve(index, event)
        except ValidationFailed as problem:
            refuse(event, "unknown_device", problem)
            continue
        try:
            _check_state(event, devices.kinds[device_id], "payload")
        except ValidationFailed as problem:
            refuse(event, "bad_state", problem)
            continue
        rows.append((device_id, event.topic, text, event.recorded_at or now))
    rejected: dict[str, int] = {}
    for refusal in refusals:
        rejected[refusal.reason] = rejected.get(refusal.reason, 0) + 1
    for reason, count in rejected.items():
        TELEMETRY_EVENTS.labels(f"rejected_{reason}").inc(count)
    devices.announce_states(session, rows)
    return StreamResult(_write(session, rows), rejected, tuple(refusals))


def _label(event: IncomingEvent) -> str:
    return event.external_id or str(event.device_id)


def _check_event(event: IncomingEvent, at: str, now: datetime) -> str:
    """Refuse what cannot be stored; return the payload's JSON text for the writer."""
    field = f"{at}.payload" if at != "payload" else at
    text, size = payload_json(event.payload, field)
    check_telemetry_size(size, field)
    # Nesting depth is at most the number of opening brackets in the text (brackets in
    # strings only overcount), so the walk over the payload is needed only past that.
    if text.count("{") + text.count("[") > MAX_TELEMETRY_DEPTH:
        check_telemetry_depth(event.payload, field)
    # NaN and Infinity the encoder refused above; an integer too large for a float it
    # writes out, and readers that take it as a number would overflow.
    if len(text) >= 309 and _LONG_DIGITS.search(text):
        check_finite(event.payload, field)
    check_telemetry_topic(event.topic, f"{at}.topic" if at != "payload" else "topic")
    if event.recorded_at is not None:
        check_recorded_at(event.recorded_at, now, f"{at}.recordedAt")
    return text


def _check_state(event: IncomingEvent, kind: DeviceKind, field: str) -> None:
    """A ``state`` event must be the normalized state of its device's kind: it is what
    commands are confirmed against and what operators act on."""
    if event.topic == STATE_TOPIC:
        check_device_state(kind, event.payload, field)


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
    kinds: dict[UUID, DeviceKind]
    integrations: dict[UUID, str]

    @classmethod
    def load(cls, session: Session, events: list[IncomingEvent]) -> _DeviceLookup:
        wanted_ids = {e.device_id for e in events if e.device_id is not None}
        wanted_ext = {e.external_id for e in events if e.device_id is None and e.external_id}
        known_ids: set[UUID] = set()
        by_ext: dict[str, dict[str, UUID]] = {}
        kinds: dict[UUID, DeviceKind] = {}
        integrations: dict[UUID, str] = {}
        if not wanted_ids and not wanted_ext:
            return cls(known_ids, by_ext, kinds, integrations)
        rows = session.execute(
            select(Device.id, Device.external_id, Device.integration, Device.kind).where(
                or_(Device.id.in_(wanted_ids), Device.external_id.in_(wanted_ext)),
                Device.retired_at.is_(None),
            )
        )
        for device_id, ext, integration, kind in rows:
            kinds[device_id] = kind
            integrations[device_id] = integration
            if device_id in wanted_ids:
                known_ids.add(device_id)
            if ext in wanted_ext:
                by_ext.setdefault(ext, {})[integration] = device_id
        return cls(known_ids, by_ext, kinds, integrations)

    def announce_states(self, session: Session, rows: list[TelemetryRow]) -> None:
        """Notify ``kittylab_states`` on commit when ``rows`` hold a state that did not
        come over the bus (the console's live feed heard those already)."""
        if any(
            topic == STATE_TOPIC and self.integrations.get(device_id) not in SELF_REPORTING
            for device_id, topic, _, _ in rows
        ):
            change_signal.mark(session, change_signal.STATES)

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
            allowed = (
                {event.integration} if isinstance(event.integration, str) else event.integration
            )
            candidates = {k: v for k, v in candidates.items() if k in allowed}
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
