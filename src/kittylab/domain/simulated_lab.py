"""The list of devices the demo lab's simulator is to simulate: the message KittyLab
publishes, retained, on ``kitty/simulator/devices`` (issue 14).

The simulator is a device like any other: it has no database access. It learns which
devices to simulate from this one message, which KittyLab's own processes publish as the
lab changes (``devices.simulated_lab``) and which only they may publish (``bus_acl``).
Retained, it reaches a simulator that starts (or restarts) after the last change at once.

The message carries only what a simulator needs, compactly:

    {"devices": [{"externalId": "farm-lights", "kind": "light", "zone": "print-farm",
                  "name": "farm lights", "capabilities": {"light_on": null, …},
                  "measures": ["temperature"]}, …]}

An intent whose payload schema is the catalogue's (``domain.devices.INTENT_CATALOGUE``)
travels as ``null``; a custom one with its schema. ``measures`` is a sensor's channels.
Pure: encoding and a strict decoding, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kittylab.domain.devices import INTENT_CATALOGUE, JsonSchema
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import PayloadTooLarge, ValidationFailed

SIMULATED = "simulated"
"""The integration of the devices the simulator stands in for."""

MAX_BYTES = 1024 * 1024
"""Larger than a device message may be (64 KiB): a lab of a few hundred devices fits."""


@dataclass(frozen=True)
class SimulatedDeviceSpec:
    """One device to simulate."""

    external_id: str
    kind: DeviceKind
    zone: str
    name: str
    capabilities: Mapping[str, JsonSchema] = field(default_factory=dict)
    """Each intent with its payload schema, as the lab declares it."""
    measures: tuple[str, ...] = ()


def encode(devices: Iterable[SimulatedDeviceSpec]) -> dict[str, Any]:
    """The message for ``devices`` (a JSON object), in a stable order."""
    out = []
    for d in sorted(devices, key=lambda d: d.external_id):
        item: dict[str, Any] = {
            "externalId": d.external_id,
            "kind": d.kind.value,
            "zone": d.zone,
            "name": d.name,
            "capabilities": {
                intent: None if INTENT_CATALOGUE.get(intent) == schema else schema
                for intent, schema in sorted(d.capabilities.items())
            },
        }
        if d.measures:
            item["measures"] = list(d.measures)
        out.append(item)
    return {"devices": out}


def decode(raw: bytes) -> list[SimulatedDeviceSpec]:
    """The devices of a message; ``ValidationFailed`` (naming the field) or
    ``PayloadTooLarge`` for anything but a well-formed one."""
    if len(raw) > MAX_BYTES:
        raise PayloadTooLarge("devices", len(raw), MAX_BYTES)
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationFailed("devices", "is not valid JSON") from None
    items = message.get("devices") if isinstance(message, dict) else None
    if not isinstance(items, list):
        raise ValidationFailed("devices", "must be a list")
    return [_device(item, f"devices.{i}") for i, item in enumerate(items)]


def _device(item: Any, at: str) -> SimulatedDeviceSpec:
    if not isinstance(item, dict):
        raise ValidationFailed(at, "must be an object")
    external_id = _text(item, "externalId", at)
    try:
        kind = DeviceKind(str(item.get("kind")))
    except ValueError:
        raise ValidationFailed(f"{at}.kind", "is not a device kind") from None
    capabilities = item.get("capabilities", {})
    if not isinstance(capabilities, dict):
        raise ValidationFailed(f"{at}.capabilities", "must be an object")
    schemas: dict[str, JsonSchema] = {}
    for intent, schema in capabilities.items():
        if schema is None:
            if intent not in INTENT_CATALOGUE:
                raise ValidationFailed(f"{at}.capabilities.{intent}", "needs its schema")
            schemas[intent] = dict(INTENT_CATALOGUE[intent])
        elif isinstance(schema, dict):
            schemas[intent] = schema
        else:
            raise ValidationFailed(f"{at}.capabilities.{intent}", "must be a schema or null")
    measures = item.get("measures", [])
    if not isinstance(measures, list) or not all(isinstance(m, str) for m in measures):
        raise ValidationFailed(f"{at}.measures", "must be a list of names")
    return SimulatedDeviceSpec(
        external_id=external_id,
        kind=kind,
        zone=_text(item, "zone", at),
        name=_text(item, "name", at),
        capabilities=schemas,
        measures=tuple(measures),
    )


def _text(item: Mapping[str, Any], key: str, at: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{at}.{key}", "must be a non-empty string")
    return value


def camera_snapshot_url(base_url: str, external_id: str) -> str:
    """Where the simulator serves what a simulated camera sees now (``base_url`` is its
    camera server, ``simulator.camera_port`` on loopback)."""
    return f"{base_url.rstrip('/')}/cameras/{external_id}/snapshot.png"
