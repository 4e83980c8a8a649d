"""What a device command needs before it is sent, and what state proves it was carried
out. Pure: the command service feeds it the normalized states drivers report
(``kittylab.domain.device_state``).

- ``precondition_refusal``: checked against the last known state before a command is
  accepted, so pausing an idle printer is refused at once (409) instead of timing out.
- ``confirms``: a command is ``acked`` only when the device's own state shows the effect;
  an HTTP 204 from a printer's API proves nothing about the printer.
- ``is_hazardous``: until the safety workflow exists every hazardous intent is refused;
  the rule errs towards hazardous (fail closed).
- ``limit_refusal``: a temperature above the printer's declared limit (its G-code policy,
  ``kittylab.domain.gcode_policy``) is refused, naming the payload field, whatever the
  intent's schema allows: the schema is the same for every printer, the limit is not.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from kittylab.domain.device_state import PrinterPhase, printer_phase
from kittylab.domain.gcode_policy import GcodePolicy, HeaterKind

# Intents that make the lab safer are never held for approval.
SAFE_INTENTS = frozenset(
    {"print_pause", "print_cancel", "power_off", "door_lock", "light_on", "printer_cooldown"}
)
# Intents that are hazardous wherever they happen.
HAZARDOUS_INTENTS = frozenset({"door_unlock", "power_on"})

# Readings a command cannot change: any fresh state confirms them.
_READ_ONLY = frozenset({"printer_status", "sensor_read"})
_TEMPERATURE_TOLERANCE = 0.5


def is_hazardous(intent: str, policy_intents: Collection[str] = ()) -> bool:
    """Hazardous: a built-in hazardous intent, or one an access policy of the device's zone
    lists. A safe intent is never hazardous, whatever a policy says."""
    if intent in SAFE_INTENTS:
        return False
    return intent in HAZARDOUS_INTENTS or intent in policy_intents


STATE_PRECONDITION_KINDS = frozenset({"printer"})
"""The kinds whose last known state can forbid an intent (``precondition_refusal``)."""


def precondition_refusal(
    kind: str, intent: str, state: Mapping[str, Any] | None, name: str
) -> str | None:
    """Why the device's last known ``state`` forbids ``intent``, or ``None``.

    Only printers have job states that forbid intents; with no known state the command is
    let through and the device decides (its refusal fails the command with its reason)."""
    if kind not in STATE_PRECONDITION_KINDS:
        return None
    phase = printer_phase(state)
    if phase is None:
        return None
    if intent == "print_start" and phase.busy:
        return f"{name} is {phase.value}; finish or cancel the current job first"
    if intent == "print_pause" and phase not in (PrinterPhase.PRINTING, PrinterPhase.HEATING):
        return f"{name} is {phase.value}, not printing"
    if intent == "print_resume" and phase is not PrinterPhase.PAUSED:
        return f"{name} is {phase.value}, not paused"
    if intent == "print_cancel" and not phase.busy:
        return f"{name} is {phase.value}; there is no job to cancel"
    if intent == "printer_heat" and phase is PrinterPhase.ERROR:
        return f"{name} is in an error state"
    return None


_HEATED: tuple[HeaterKind, ...] = ("nozzle", "bed", "chamber")


def limit_refusal(
    kind: str, payload: Mapping[str, Any], policy: GcodePolicy, name: str
) -> tuple[str, str] | None:
    """``(field, reason)`` when a printer command's payload sets a heater (``nozzle``,
    ``bed``, ``chamber``: ``printer_heat``, or a custom intent using those names) above the
    printer's limit; None otherwise. Other devices have no heaters to limit."""
    if kind != "printer":
        return None
    for heater in _HEATED:
        value = payload.get(heater)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        limit = policy.limit(heater)
        if not value <= limit:  # NaN is refused too
            return (
                f"payload.{heater}",
                f"{value:g} °C is above {name}'s {limit:g} °C {heater} limit "
                f"(its gcode_policy.max_{heater}_c)",
            )
    return None


def has_temperatures(payload: Mapping[str, Any]) -> bool:
    """Whether a payload sets any heater: only then does the printer's policy matter."""
    return any(heater in payload for heater in _HEATED)


def confirms(
    intent: str,
    payload: Mapping[str, Any],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
) -> bool:
    """Whether the state ``after`` sending shows ``intent`` was carried out. ``before`` is
    the state read just before sending (for effects that are a change, like a snapshot)."""
    if intent in _READ_ONLY:
        return True
    check = _CHECKS.get(intent)
    if check is None:
        return False
    try:
        return bool(check(payload, before or {}, after))
    except (TypeError, ValueError, AttributeError):
        return False  # a state the device garbled confirms nothing


def _phase_in(*phases: PrinterPhase) -> Any:
    def check(_: Mapping[str, Any], __: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
        return printer_phase(after) in phases

    return check


def _print_started(
    payload: Mapping[str, Any], _: Mapping[str, Any], after: Mapping[str, Any]
) -> bool:
    if printer_phase(after) not in (PrinterPhase.HEATING, PrinterPhase.PRINTING):
        return False
    file = after.get("file")
    # Printers report the bare file name; a driver may have been given a path.
    return file is None or str(payload["file"]).rsplit("/", 1)[-1] == str(file).rsplit("/", 1)[-1]


def _targets(payload: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    for heater in ("nozzle", "bed"):
        if heater in payload:
            reported = after.get(heater)
            if not isinstance(reported, Mapping) or "target" not in reported:
                return False
            if abs(float(reported["target"]) - float(payload[heater])) > _TEMPERATURE_TOLERANCE:
                return False
    return True


def _heated(payload: Mapping[str, Any], _: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    return _targets(payload, after)


def _cooled(_: Mapping[str, Any], __: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    return _targets({"nozzle": 0, "bed": 0}, after)


def _flag(key: str, value: bool) -> Any:
    def check(_: Mapping[str, Any], __: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
        return after.get(key) is value

    return check


def _brightness(payload: Mapping[str, Any], _: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    wanted = int(payload["brightness"])
    if wanted == 0:
        return after.get("on") is False
    return after.get("on") is True and after.get("brightness") == wanted


def _snapshot_taken(
    _: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]
) -> bool:
    taken_before = before.get("snapshots_taken")
    taken_after = after.get("snapshots_taken")
    if isinstance(taken_before, int) and isinstance(taken_after, int):
        return taken_after > taken_before
    url_before, url_after = before.get("last_snapshot_url"), after.get("last_snapshot_url")
    return url_after is not None and url_after != url_before


_CHECKS = {
    "print_start": _print_started,
    "print_pause": _phase_in(PrinterPhase.PAUSED),
    "print_resume": _phase_in(PrinterPhase.PRINTING, PrinterPhase.HEATING),
    "print_cancel": _phase_in(PrinterPhase.CANCELLED, PrinterPhase.IDLE),
    "printer_heat": _heated,
    "printer_cooldown": _cooled,
    "light_on": _flag("on", True),
    "light_off": _flag("on", False),
    "light_set_brightness": _brightness,
    "door_lock": _flag("locked", True),
    "door_unlock": _flag("locked", False),
    "power_on": _flag("on", True),
    "power_off": _flag("on", False),
    "camera_snapshot": _snapshot_taken,
}
