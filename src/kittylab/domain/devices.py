"""Devices and what they may be asked to do.

A device's ``capabilities`` map each allowed intent to the JSON Schema of its payload. The
catalogue below gives the standard intents of the lab vocabulary; a manifest may narrow a
device to some of them, or declare its own intents with their own schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from kittylab.domain import file_names
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.payload_checks import check_finite

JsonSchema = dict[str, Any]


def _empty() -> JsonSchema:
    return {"type": "object", "properties": {}, "additionalProperties": False}


_TEMPERATURE = {"type": "number", "minimum": 0, "maximum": 350}

INTENT_CATALOGUE: Mapping[str, JsonSchema] = {
    "light_on": _empty(),
    "light_off": _empty(),
    "light_set_brightness": {
        "type": "object",
        "properties": {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["brightness"],
        "additionalProperties": False,
    },
    "power_on": _empty(),
    "power_off": _empty(),
    "door_lock": _empty(),
    "door_unlock": _empty(),
    "camera_snapshot": _empty(),
    "print_start": {
        "type": "object",
        # A plain file name on the printer, never a path, URL or G-code (domain.file_names).
        "properties": {
            "file": {
                "type": "string",
                "minLength": 1,
                "maxLength": file_names.MAX_LENGTH,
                "pattern": file_names.PATTERN,
            }
        },
        "required": ["file"],
        "additionalProperties": False,
    },
    "print_pause": _empty(),
    "print_resume": _empty(),
    "print_cancel": _empty(),
    "printer_status": _empty(),
    "printer_heat": {
        "type": "object",
        "properties": {"nozzle": _TEMPERATURE, "bed": {**_TEMPERATURE, "maximum": 150}},
        "minProperties": 1,
        "additionalProperties": False,
    },
    "printer_cooldown": _empty(),
    "sensor_read": _empty(),
}

DEFAULT_INTENTS: Mapping[DeviceKind, tuple[str, ...]] = {
    DeviceKind.PRINTER: (
        "print_start",
        "print_pause",
        "print_resume",
        "print_cancel",
        "printer_status",
        "printer_heat",
        "printer_cooldown",
    ),
    DeviceKind.CAMERA: ("camera_snapshot",),
    DeviceKind.LIGHT: ("light_on", "light_off", "light_set_brightness"),
    DeviceKind.DOOR: ("door_lock", "door_unlock"),
    DeviceKind.POWER: ("power_on", "power_off"),
    DeviceKind.SENSOR: ("sensor_read",),
}

MAX_EXTERNAL_ID = 128


def validate_external_id(value: str) -> str:
    ext = value.strip()
    if not ext:
        raise ValidationFailed("external_id", "is required")
    if len(ext) > MAX_EXTERNAL_ID or any(c in ext for c in "/#+ \t\n"):
        # It becomes an MQTT topic level, so wildcard and separator characters are banned.
        raise ValidationFailed(
            "external_id", "must be at most 128 characters without '/', '#', '+' or spaces"
        )
    return ext


def build_capabilities(
    kind: DeviceKind, declared: list[str] | Mapping[str, JsonSchema | None] | None
) -> dict[str, JsonSchema]:
    """Resolve a manifest's capability declaration into intent → payload schema.

    ``None`` takes the kind's defaults; a list names catalogue intents; a mapping may also
    give custom intents their own schema (``None`` meaning the catalogue's schema)."""
    if declared is None:
        return {intent: dict(INTENT_CATALOGUE[intent]) for intent in DEFAULT_INTENTS[kind]}
    items: list[tuple[str, JsonSchema | None]]
    if isinstance(declared, list):
        items = [(intent, None) for intent in declared]
    else:
        items = list(declared.items())
    capabilities: dict[str, JsonSchema] = {}
    for intent, schema in items:
        if schema is None:
            if intent not in INTENT_CATALOGUE:
                raise ValidationFailed(
                    f"capabilities.{intent}",
                    "is not a standard intent; give it a payload schema",
                )
            schema = dict(INTENT_CATALOGUE[intent])
        capabilities[intent] = schema
    validate_capabilities(capabilities)
    return capabilities


def validate_capabilities(capabilities: Mapping[str, Any]) -> None:
    if not isinstance(capabilities, Mapping):
        raise ValidationFailed("capabilities", "must map intent names to payload schemas")
    for intent, schema in capabilities.items():
        if not intent or not intent.replace("_", "").isalnum():
            raise ValidationFailed(f"capabilities.{intent}", "intent names are snake_case words")
        if not isinstance(schema, Mapping):
            raise ValidationFailed(f"capabilities.{intent}", "must be a JSON Schema object")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValidationFailed(
                f"capabilities.{intent}", f"is not a valid JSON Schema: {exc.message}"
            ) from None


def validate_command(
    capabilities: Mapping[str, JsonSchema], intent: str, payload: Mapping[str, Any]
) -> None:
    """An intent must be one the device declares, and its payload must match the schema
    and hold finite numbers only.

    A ``print_start`` file must also be a plain file name (``file_names.problem``) whatever
    schema the device stored: devices recorded before the catalogue had a pattern, and a
    manifest's own schema for it, would otherwise let a path or a line of G-code through."""
    if intent not in capabilities:
        allowed = ", ".join(sorted(capabilities)) or "nothing"
        raise ValidationFailed(
            "intent", f"{intent!r} is not supported; this device accepts {allowed}"
        )
    if intent == "print_start" and "file" in payload:
        file_names.check(payload["file"], "payload.file")
    # JSON Schema lets NaN through ``minimum``/``maximum`` (every comparison with it is
    # false); a device would take it as a setpoint (issue 13).
    check_finite(payload, "payload")
    validator = Draft202012Validator(capabilities[intent])
    errors = sorted(validator.iter_errors(dict(payload)), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path)
        raise ValidationFailed(f"payload.{path}" if path else "payload", first.message)


_VERBS = {
    "light_on": "Turning on {d}",
    "light_off": "Turning off {d}",
    "light_set_brightness": "Setting {d} to {brightness}%",
    "power_on": "Powering on {d}",
    "power_off": "Powering off {d}",
    "door_lock": "Locking {d}",
    "door_unlock": "Unlocking {d}",
    "camera_snapshot": "Taking a snapshot with {d}",
    "print_start": "Printing {file} on {d}",
    "print_pause": "Pausing {d}",
    "print_resume": "Resuming {d}",
    "print_cancel": "Cancelling the print on {d}",
    "printer_status": "Asking {d} for its status",
    "printer_heat": "Heating {d}",
    "printer_cooldown": "Cooling down {d}",
    "sensor_read": "Reading {d}",
}


def describe_intent(intent: str, device: str, args: Mapping[str, Any]) -> str:
    """A command in words, for people: "Dimming the farm lights to 30%"."""
    template = _VERBS.get(intent, "{d}: " + intent.replace("_", " "))
    text = template.format(d=device, **{k: v for k, v in args.items() if k != "d"})
    if intent == "printer_heat":
        parts = [f"{k} {v}°C" for k, v in args.items()]
        text += " (" + ", ".join(parts) + ")"
    return text
