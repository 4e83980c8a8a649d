"""Heater targets as drivers send them: numbers, never text from a payload.

A ``printer_heat`` payload has passed its schema before a driver sees it, but a schema's
``minimum``/``maximum`` let NaN through (every comparison with it is false), and Python's
JSON reader accepts ``NaN`` and ``Infinity``. Drivers that write G-code (``M104 S…``) or
JSON for a printer take each target through ``target`` and, for G-code, ``gcode_number``,
so what goes out is a finite, non-negative number written as digits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kittylab.domain.errors import DeviceRefused


def target(payload: Mapping[str, Any], key: str, who: str) -> float | None:
    """``payload[key]`` as a finite temperature in °C (None when absent); ``DeviceRefused``
    for anything else (text, a bool, NaN, infinity, below zero)."""
    value = payload.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise DeviceRefused(f"{who}: {key} must be a temperature in °C, not {value!r:.40}")
    return float(value)


def gcode_number(value: float) -> str:
    """``value`` as a G-code parameter in whole degrees (``215``): digits only, never an
    exponent, a sign or ``nan``. Within the command service's 0.5 °C confirmation tolerance."""
    if not math.isfinite(value) or value < 0:
        raise ValueError("a heater target must be finite and not below zero")
    return str(round(value))


def heat_lines(payload: Mapping[str, Any], who: str) -> list[str]:
    """The ``M104`` (nozzle) and ``M140`` (bed) lines a ``printer_heat`` payload asks for;
    ``DeviceRefused`` when it names neither or a target is not a temperature."""
    lines = []
    for key, command in (("nozzle", "M104"), ("bed", "M140")):
        value = target(payload, key, who)
        if value is not None:
            lines.append(f"{command} S{gcode_number(value)}")
    if not lines:
        raise DeviceRefused(f"{who}: printer_heat needs a nozzle or bed temperature")
    return lines
