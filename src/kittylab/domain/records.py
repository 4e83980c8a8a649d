"""Rules of the audit-like records: telemetry, routing decisions, CAD artifacts, print
monitoring and safety events."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from kittylab.domain.enums import MonitorEventType, SafetyStatus
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed

MAX_TELEMETRY_BYTES = 64 * 1024


# Telemetry may be back-filled by a device that was offline, but not from the distant past
# or the future: such a timestamp would pin ``last_seen`` and hide newer reports.
MAX_TELEMETRY_AGE = timedelta(days=7)
MAX_CLOCK_SKEW = timedelta(minutes=5)


# Nesting deeper than any real sensor report; deeper payloads could not even be serialized
# back out by the API.
MAX_TELEMETRY_DEPTH = 32


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_telemetry_depth(payload: Any, field: str = "payload") -> None:
    if json_depth(payload) > MAX_TELEMETRY_DEPTH:
        raise ValidationFailed(field, f"nests deeper than {MAX_TELEMETRY_DEPTH} levels")


MAX_TELEMETRY_TOPIC_CHARS = 256


def check_telemetry_topic(topic: str, field: str = "topic") -> None:
    """A topic the database can hold: 1–256 characters, no NUL. MQTT topics reach this
    without the API's schema, and one unstorable value would fail a whole batch."""
    if not topic or len(topic) > MAX_TELEMETRY_TOPIC_CHARS:
        raise ValidationFailed(field, f"must be 1 to {MAX_TELEMETRY_TOPIC_CHARS} characters")
    if "\x00" in topic:
        raise ValidationFailed(field, "cannot contain NUL characters")


def check_telemetry_size(raw_size: int, field: str = "payload") -> None:
    if raw_size > MAX_TELEMETRY_BYTES:
        raise PayloadTooLarge(field, raw_size, MAX_TELEMETRY_BYTES)


def check_recorded_at(recorded_at: datetime, now: datetime, field: str = "recordedAt") -> None:
    if recorded_at.tzinfo is None:
        raise ValidationFailed(field, "needs a timezone (for example 2026-11-27T10:00:00Z)")
    if recorded_at > now + MAX_CLOCK_SKEW:
        raise ValidationFailed(field, "is in the future; check the device's clock")
    if recorded_at < now - MAX_TELEMETRY_AGE:
        raise ValidationFailed(field, f"is older than {MAX_TELEMETRY_AGE.days} days")


def validate_confidence(value: float | None, field: str = "confidence") -> float:
    if value is None:
        raise ValidationFailed(field, "is required")
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValidationFailed(field, "must be between 0 and 1")
    return float(value)


def validate_routing_decision(
    confidence: float | None, cost_estimate: Decimal | float | None, latency_ms: int | None
) -> Decimal:
    """Confidence in 0..1, latency required, cost always recorded: a missing cost is 0,
    never null, so cost reports add up. Returns the cost to store."""
    validate_confidence(confidence)
    if latency_ms is None:
        raise ValidationFailed("latency_ms", "is required")
    if latency_ms < 0:
        raise ValidationFailed("latency_ms", "cannot be negative")
    cost = Decimal(0) if cost_estimate is None else Decimal(str(cost_estimate))
    if cost.is_nan() or cost < 0:
        raise ValidationFailed("cost_estimate", "cannot be negative")
    return cost


REQUIRED_ARTIFACT_METADATA = ("bounding_box", "material_hints", "generation_params")


def validate_artifact_metadata(metadata: Mapping[str, Any]) -> None:
    for key in REQUIRED_ARTIFACT_METADATA:
        if key not in metadata:
            raise ValidationFailed(f"metadata.{key}", "is required")
    box = metadata["bounding_box"]
    if not isinstance(box, Mapping) or not all(
        isinstance(box.get(axis), int | float) and box[axis] >= 0 for axis in ("x", "y", "z")
    ):
        raise ValidationFailed(
            "metadata.bounding_box", "must give non-negative x, y and z extents in mm"
        )
    if not isinstance(metadata["material_hints"], list):
        raise ValidationFailed("metadata.material_hints", "must be a list")
    if not isinstance(metadata["generation_params"], Mapping):
        raise ValidationFailed("metadata.generation_params", "must be an object")


def validate_monitor_event(
    event_type: MonitorEventType, confidence: float | None, snapshot_key: str | None
) -> None:
    validate_confidence(confidence)
    if event_type.is_failure and not (snapshot_key or "").strip():
        raise ValidationFailed(
            "snapshot_key", f"is required for a {event_type.value} event, as evidence"
        )


def validate_safety_resolution(status: SafetyStatus, approved_by: UUID | None) -> None:
    if status is SafetyStatus.APPROVED and approved_by is None:
        raise ValidationFailed("approved_by", "is required when the event is approved")
