"""What a payload from the bus must be before anything acts on it or stores it (pure).

Anyone who can publish on the bus can send anything: ``NaN`` and ``Infinity`` (which
Python's ``json`` accepts but PostgreSQL's ``jsonb`` and every JSON consumer downstream
refuse), numbers no float can hold, payloads nested thousands deep, a printer's nozzle
reading ``"hot"``. One such value once reached a simulated printer's state; the state could
then not be stored, the all-or-nothing telemetry batch failed every round and the whole lab
went offline (issue 13). The checks here refuse such a payload where it enters, so it costs
only itself:

- ``parse_bus_json``: bytes → JSON value within size and depth, numbers finite.
- ``check_finite``: every number in a value is finite and fits a float.
- ``check_device_state``: a reported state has the normalized shape of its device's kind
  (``domain.device_state``); keys a kind does not define are allowed, as are missing ones.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from kittylab.domain.device_state import PrinterPhase
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed
from kittylab.domain.records import MAX_TELEMETRY_BYTES, MAX_TELEMETRY_DEPTH, json_depth

MAX_BUS_JSON_BYTES = MAX_TELEMETRY_BYTES
"""A command or a state on the bus is at most what one telemetry event may be (64 KiB)."""
MAX_BUS_JSON_DEPTH = MAX_TELEMETRY_DEPTH

_LARGEST = sys.float_info.max


def non_finite_path(value: Any) -> str | None:
    """The dotted path (``""`` for the value itself) of the first number in ``value`` that
    is NaN, infinite, or an integer too large for a float; ``None`` when there is none.
    Walks without recursion, so depth alone cannot make it fail."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return path
        elif isinstance(item, int):
            if abs(item) > _LARGEST:
                return path
        elif isinstance(item, Mapping):
            stack.extend(
                (child, f"{path}.{key}" if path else str(key)) for key, child in item.items()
            )
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(item))
    return None


def check_finite(value: Any, field: str = "payload") -> None:
    path = non_finite_path(value)
    if path is not None:
        raise ValidationFailed(f"{field}.{path}" if path else field, "must be a finite number")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_bus_json(raw: bytes, field: str = "payload") -> Any:
    """``raw`` as JSON, refused (``PayloadTooLarge``, ``ValidationFailed`` naming
    ``field``) when over 64 KiB, not strict JSON (``NaN``, ``Infinity`` or invalid
    text), nested deeper than 32 levels, or holding a number that is not finite."""
    if len(raw) > MAX_BUS_JSON_BYTES:
        raise PayloadTooLarge(field, len(raw), MAX_BUS_JSON_BYTES)
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValidationFailed(field, f"nests deeper than {MAX_BUS_JSON_DEPTH} levels") from None
    except ValueError:  # includes UnicodeDecodeError and integers of over 4,300 digits
        raise ValidationFailed(field, "is not valid JSON (NaN and Infinity are not JSON)") from None
    if json_depth(value) > MAX_BUS_JSON_DEPTH:
        raise ValidationFailed(field, f"nests deeper than {MAX_BUS_JSON_DEPTH} levels")
    check_finite(value, field)
    return value


# --- the normalized state of each kind (docs/integrations/mqtt.md, domain/device_state) --

_NUMBER = {"type": "number"}
_TEMPERATURE_C = {"type": "number", "minimum": -300, "maximum": 3000}
_HEATER = {"type": "object", "properties": {"actual": _TEMPERATURE_C, "target": _TEMPERATURE_C}}
_TEXT_OR_NULL = {"type": ["string", "null"]}

STATE_SCHEMAS: Mapping[DeviceKind, Mapping[str, Any]] = {
    DeviceKind.PRINTER: {
        "type": "object",
        "required": ["state"],
        "properties": {
            "state": {"enum": [phase.value for phase in PrinterPhase]},
            "file": _TEXT_OR_NULL,
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "nozzle": _HEATER,
            "bed": _HEATER,
            "failure": _TEXT_OR_NULL,
            "filament_present": {"type": "boolean"},
            "seconds_left": {"type": ["number", "null"], "minimum": 0},
        },
    },
    DeviceKind.LIGHT: {
        "type": "object",
        "required": ["on"],
        "properties": {
            "on": {"type": "boolean"},
            "brightness": {"type": "number", "minimum": 0, "maximum": 100},
        },
    },
    DeviceKind.DOOR: {
        "type": "object",
        "required": ["locked"],
        "properties": {"locked": {"type": "boolean"}},
    },
    DeviceKind.POWER: {
        "type": "object",
        "required": ["on"],
        "properties": {"on": {"type": "boolean"}, "watts": _NUMBER},
    },
    DeviceKind.CAMERA: {
        "type": "object",
        "properties": {
            "streaming": {"type": "boolean"},
            "snapshots_taken": {"type": "integer", "minimum": 0},
            "last_snapshot_url": _TEXT_OR_NULL,
        },
    },
    # Each measure maps to {"value": number, "unit": text}; what else a sensor reports is
    # its own business.
    DeviceKind.SENSOR: {
        "type": "object",
        "additionalProperties": {
            "properties": {"value": _NUMBER, "unit": {"type": "string"}},
        },
    },
}

_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in STATE_SCHEMAS.items()}


def check_device_state(kind: DeviceKind, state: Any, field: str = "payload") -> None:
    """Refuse a state a device of ``kind`` cannot have, naming the first wrong key."""
    validator = _VALIDATORS.get(kind)
    if validator is None:
        return
    error = min(validator.iter_errors(state), key=lambda e: list(map(str, e.path)), default=None)
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        raise ValidationFailed(f"{field}.{path}" if path else field, error.message)
