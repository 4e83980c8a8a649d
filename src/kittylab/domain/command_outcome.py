"""A decided device command in words, for the person who asked (issue 16): "The farm
lights are on at 30 %", "Prusa MK4 did not pause: it is idle". Pure: the caller passes the
device's newest reported state when it has one, so a reading or a camera's picture can be
named; without it the sentence says what was confirmed and nothing more.

A camera's picture is linked only when the device reported one (``last_snapshot_url``)
or the caller stored one as an artifact; otherwise the sentence says plainly that no
image was kept, never pretends there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kittylab.domain.devices import describe_intent

_DONE = {
    "light_on": "{d} is on",
    "light_off": "{d} is off",
    "power_on": "{d} is powered on",
    "power_off": "{d} is powered off",
    "door_lock": "{d} is locked",
    "door_unlock": "{d} is unlocked",
    "print_start": "{d} has started printing {file}",
    "print_pause": "{d} is paused",
    "print_resume": "{d} is printing again",
    "print_cancel": "The print on {d} is cancelled",
    "printer_heat": "{d} is heating",
    "printer_cooldown": "{d} is cooling down",
    "printer_status": "{d} answered",
    "sensor_read": "{d} was read",
    "camera_snapshot": "{d} took a snapshot",
}
_UNDONE = {
    "light_on": "{d} did not turn on",
    "light_off": "{d} did not turn off",
    "light_set_brightness": "{d} did not change to {brightness} %",
    "power_on": "{d} did not power on",
    "power_off": "{d} did not power off",
    "door_lock": "{d} did not lock",
    "door_unlock": "{d} did not unlock",
    "print_start": "{d} did not start printing {file}",
    "print_pause": "{d} did not pause",
    "print_resume": "{d} did not resume",
    "print_cancel": "The print on {d} was not cancelled",
    "printer_heat": "{d} did not start heating",
    "printer_cooldown": "{d} did not cool down",
    "printer_status": "{d} did not answer",
    "sensor_read": "{d} could not be read",
    "camera_snapshot": "{d} took no snapshot",
}


def _fill(template: str, device: str, payload: Mapping[str, Any]) -> str:
    values = {k: v for k, v in payload.items() if k != "d"}
    try:
        return template.format(d=device, **values)
    except (KeyError, IndexError, ValueError):
        return template.split(" {", 1)[0].format(d=device)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _agree(sentence: str, device: str) -> str:
    """ "Farm lights are on", not "is on": a name ending in a plural -s takes the plural."""
    last = device.rsplit(" ", 1)[-1].lower()
    if not (last.endswith("s") and not last.endswith("ss") and len(last) > 3):
        return sentence
    for singular, plural in ((" is ", " are "), (" has ", " have ")):
        for name in (device, _capital(device)):
            sentence = sentence.replace(f"{name}{singular}", f"{name}{plural}", 1)
    return sentence


def confirmed(
    intent: str,
    device: str,
    payload: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    *,
    picture: str | None = None,
) -> str:
    """The sentence for an ``acked`` command. ``picture``: where a camera's snapshot was
    stored (an artifact link), when it was."""
    return _agree(_confirmed(intent, device, payload, state, picture), device)


def _confirmed(
    intent: str,
    device: str,
    payload: Mapping[str, Any],
    state: Mapping[str, Any] | None,
    picture: str | None,
) -> str:
    if intent == "light_set_brightness":
        level = _number(state, "brightness", payload.get("brightness"))
        return f"{_capital(device)} is on at {level} %." if level else f"{_capital(device)} is off."
    if intent == "light_on":
        level = _number(state, "brightness", None)
        if level:
            return f"{_capital(device)} is on at {level} %."
    if intent == "printer_heat":
        targets = ", ".join(f"{k} to {v} °C" for k, v in payload.items())
        return f"{_capital(device)} is heating ({targets})." if targets else f"{device} is heating."
    if intent == "sensor_read" and state:
        readings = _readings(state)
        if readings:
            return f"{_capital(device)}: {readings}."
    if intent == "printer_status" and state and "state" in state:
        return f"{_capital(device)} is {state['state']}{_progress(state)}."
    if intent == "camera_snapshot":
        return _snapshot(device, state, picture)
    template = _DONE.get(intent, "{d} confirmed " + intent.replace("_", " "))
    return _capital(_fill(template, device, payload)) + "."


def failed(intent: str, device: str, payload: Mapping[str, Any], reason: str | None) -> str:
    """The sentence for a ``failed`` command: what did not happen, and why."""
    template = _UNDONE.get(intent, "{d} did not " + intent.replace("_", " "))
    why = (reason or "no reason was given").strip().rstrip(".")
    return _agree(f"{_capital(_fill(template, device, payload))}: {why}.", device)


def under_way(intent: str, device: str, payload: Mapping[str, Any], reference: str) -> str:
    """Said when the device has not confirmed within the reply's bound. ``reference``
    names the command ("command 01a250d9")."""
    return _agree(
        f"{describe_intent(intent, device, payload)}: under way ({reference}); {device} has "
        "not confirmed yet, and I'll say here how it went.",
        device,
    )


def _number(state: Mapping[str, Any] | None, key: str, fallback: Any) -> Any:
    if state is not None and isinstance(state.get(key), int | float):
        value = state[key]
        return int(value) if float(value).is_integer() else value
    return fallback


def _readings(state: Mapping[str, Any]) -> str:
    parts = []
    for name, reading in state.items():
        if isinstance(reading, Mapping) and isinstance(reading.get("value"), int | float):
            unit = str(reading.get("unit", ""))
            parts.append(f"{name.replace('_', ' ')} {reading['value']:.1f} {unit}".rstrip())
    return ", ".join(parts)


def _progress(state: Mapping[str, Any]) -> str:
    progress = state.get("progress")
    if isinstance(progress, int | float) and state.get("state") == "printing":
        return f", {progress * 100:.0f} % done"
    return ""


def _snapshot(device: str, state: Mapping[str, Any] | None, picture: str | None) -> str:
    link = picture
    if link is None and state is not None and isinstance(state.get("last_snapshot_url"), str):
        link = state["last_snapshot_url"]
    if link:
        return f"{_capital(device)} took a snapshot: {link}"
    return (
        f"{_capital(device)} took a snapshot, but no picture was kept: the camera reported "
        "no image (no last_snapshot_url) and nothing was stored as an artifact."
    )
