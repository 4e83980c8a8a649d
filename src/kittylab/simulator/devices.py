"""Stateful simulators for every device kind: the built-in ``simulated`` integration the
demo lab runs on.

Each simulator keeps the state a real device would (a printer's temperatures, job and
progress; a door's lock; a sensor's drifting readings), changes it only through the lab's
intents, advances it with ``tick`` and reports it with ``snapshot``. An intent the device's
state forbids (pausing a printer that is not printing) raises ``DeviceRefused`` with the
reason, as a real printer's firmware would refuse it.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from kittylab.domain import file_names
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused
from kittylab.domain.simulated_lab import SimulatedDeviceSpec


class SimulatedDevice(ABC):
    kind: DeviceKind

    def __init__(self, external_id: str) -> None:
        self.external_id = external_id
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {}

    @property
    def intents(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handle(self, intent: str, payload: Mapping[str, Any]) -> None:
        """Apply one intent (already validated against the device's capabilities)."""
        handler = self._handlers.get(intent)
        if handler is None:
            raise DeviceRefused(f"{self.external_id} ({self.kind.value}) cannot {intent}")
        handler(payload)

    def tick(self, seconds: float) -> None:  # noqa: B027 - most devices have no dynamics
        """Advance time by ``seconds``."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """The device's state as it would report it."""


class PrinterState(StrEnum):
    IDLE = "idle"
    HEATING = "heating"
    PRINTING = "printing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def busy(self) -> bool:
        return self in (PrinterState.HEATING, PrinterState.PRINTING, PrinterState.PAUSED)


AMBIENT_C = 22.0
# Share of the gap to the target temperature closed per second: a hotend reaches 215 °C
# from ambient in about a minute, a bed in a little more, as real machines do.
NOZZLE_RATE = 0.08
BED_RATE = 0.05
DEFAULT_PRINT_SECONDS = 600.0
DEFAULT_NOZZLE_C = 215.0
DEFAULT_BED_C = 60.0


class SimulatedPrinter(SimulatedDevice):
    kind = DeviceKind.PRINTER

    def __init__(self, external_id: str, print_seconds: float = DEFAULT_PRINT_SECONDS) -> None:
        super().__init__(external_id)
        self.state = PrinterState.IDLE
        self.nozzle = self.bed = AMBIENT_C
        self.nozzle_target = self.bed_target = 0.0
        self.file: str | None = None
        self.progress = 0.0
        self.print_seconds = print_seconds
        self.failure: str | None = None
        self.broken_heaters: set[str] = set()
        self._handlers = {
            "print_start": self._start,
            "print_pause": self._pause,
            "print_resume": self._resume,
            "print_cancel": self._cancel,
            "printer_status": lambda _: None,
            "printer_heat": self._heat,
            "printer_cooldown": self._cooldown,
        }

    def _start(self, payload: Mapping[str, Any]) -> None:
        # As a real printer's host would: a file is a plain name on its storage.
        file = file_names.refuse_unless_plain(payload.get("file"), self.external_id)
        if self.state.busy:
            raise DeviceRefused(f"{self.external_id} is {self.state.value}; finish or cancel first")
        self.file = file
        self.progress = 0.0
        self.failure = None
        self.nozzle_target = self.nozzle_target or DEFAULT_NOZZLE_C
        self.bed_target = self.bed_target or DEFAULT_BED_C
        self.state = PrinterState.HEATING

    def _pause(self, _: Mapping[str, Any]) -> None:
        if self.state not in (PrinterState.PRINTING, PrinterState.HEATING):
            raise DeviceRefused(f"{self.external_id} is {self.state.value}, not printing")
        self.state = PrinterState.PAUSED

    def _resume(self, _: Mapping[str, Any]) -> None:
        if self.state is not PrinterState.PAUSED:
            raise DeviceRefused(f"{self.external_id} is {self.state.value}, not paused")
        self.state = PrinterState.HEATING if not self._at_temperature() else PrinterState.PRINTING

    def _cancel(self, _: Mapping[str, Any]) -> None:
        if not self.state.busy:
            raise DeviceRefused(f"{self.external_id} is {self.state.value}; nothing to cancel")
        self.state = PrinterState.CANCELLED
        self.nozzle_target = self.bed_target = 0.0

    def _heat(self, payload: Mapping[str, Any]) -> None:
        # Checked whole before anything changes, as firmware checks a setpoint against its
        # heater's limits: a half-applied or NaN target could not be undone by a report.
        targets = {h: _setpoint(payload[h], h, self.external_id) for h in HEATERS if h in payload}
        self.nozzle_target = targets.get("nozzle", self.nozzle_target)
        self.bed_target = targets.get("bed", self.bed_target)

    def _cooldown(self, _: Mapping[str, Any]) -> None:
        if self.state in (PrinterState.PRINTING, PrinterState.HEATING):
            raise DeviceRefused(f"{self.external_id} is {self.state.value}; pause or cancel first")
        self.nozzle_target = self.bed_target = 0.0

    def fail(self, reason: str) -> None:
        """Make the running job fail, as a clog or a detached print would."""
        if not self.state.busy:
            raise DeviceRefused(f"{self.external_id} is {self.state.value}; no job to fail")
        self.state = PrinterState.FAILED
        self.failure = reason
        self.nozzle_target = self.bed_target = 0.0

    def break_heater(self, heater: str) -> None:
        """Make ``heater`` ("nozzle" or "bed") stop heating while its target stays set, as a
        failed cartridge or a loose thermistor would: what thermal-runaway checks catch."""
        self.broken_heaters.add(heater)

    def _at_temperature(self) -> bool:
        return self.nozzle >= self.nozzle_target - 3 and self.bed >= self.bed_target - 3

    def tick(self, seconds: float) -> None:
        nozzle_goal = AMBIENT_C if "nozzle" in self.broken_heaters else self.nozzle_target
        bed_goal = AMBIENT_C if "bed" in self.broken_heaters else self.bed_target
        self.nozzle = _approach(self.nozzle, nozzle_goal or AMBIENT_C, NOZZLE_RATE, seconds)
        self.bed = _approach(self.bed, bed_goal or AMBIENT_C, BED_RATE, seconds)
        if self.state is PrinterState.HEATING and self._at_temperature():
            self.state = PrinterState.PRINTING
        elif self.state is PrinterState.PRINTING:
            self.progress = min(1.0, self.progress + seconds / self.print_seconds)
            if self.progress >= 1.0:
                self.state = PrinterState.COMPLETED
                self.nozzle_target = self.bed_target = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "file": self.file,
            "progress": round(self.progress, 4),
            "nozzle": {"actual": round(self.nozzle, 1), "target": self.nozzle_target},
            "bed": {"actual": round(self.bed, 1), "target": self.bed_target},
            "failure": self.failure,
        }


HEATERS = {"nozzle": 350.0, "bed": 150.0}
"""The highest target each heater takes, in °C (as the intent catalogue's schema)."""


def _setpoint(value: Any, heater: str, external_id: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DeviceRefused(f"{external_id}: the {heater} target must be a number")
    if not 0 <= value <= HEATERS[heater]:  # false for NaN too
        raise DeviceRefused(f"{external_id}: a {heater} target of {value} is out of range")
    return float(value)


def _approach(value: float, target: float, rate: float, seconds: float) -> float:
    """First-order approach: close ``rate`` of the gap per second."""
    keep: float = (1 - rate) ** seconds
    return target + (value - target) * keep


class SimulatedLight(SimulatedDevice):
    kind = DeviceKind.LIGHT

    def __init__(self, external_id: str) -> None:
        super().__init__(external_id)
        self.on = False
        self.brightness = 100
        self._handlers = {
            "light_on": lambda _: self._set(on=True),
            "light_off": lambda _: self._set(on=False),
            "light_set_brightness": lambda p: self._set(
                on=p["brightness"] > 0, level=p["brightness"]
            ),
        }

    def _set(self, *, on: bool, level: int | None = None) -> None:
        self.on = on
        if level is not None and level > 0:
            self.brightness = int(level)

    def snapshot(self) -> dict[str, Any]:
        return {"on": self.on, "brightness": self.brightness if self.on else 0}


class SimulatedDoor(SimulatedDevice):
    kind = DeviceKind.DOOR

    def __init__(self, external_id: str) -> None:
        super().__init__(external_id)
        self.locked = True  # doors of a lab start locked: the safe state
        self._handlers = {
            "door_lock": lambda _: setattr(self, "locked", True),
            "door_unlock": lambda _: setattr(self, "locked", False),
        }

    def snapshot(self) -> dict[str, Any]:
        return {"locked": self.locked}


class SimulatedPower(SimulatedDevice):
    kind = DeviceKind.POWER

    def __init__(self, external_id: str, load_watts: float = 1500.0) -> None:
        super().__init__(external_id)
        self.on = False  # relays start open: the safe state
        self.load_watts = load_watts
        self._handlers = {
            "power_on": lambda _: setattr(self, "on", True),
            "power_off": lambda _: setattr(self, "on", False),
        }

    def snapshot(self) -> dict[str, Any]:
        return {"on": self.on, "watts": self.load_watts if self.on else 0.0}


class SimulatedCamera(SimulatedDevice):
    kind = DeviceKind.CAMERA

    def __init__(self, external_id: str) -> None:
        super().__init__(external_id)
        self.snapshots = 0
        self.last_snapshot_url: str | None = None
        """Where the still of the last ``camera_snapshot`` is served, once the camera
        studio (``simulator.cameras``) has rendered it; None without a studio."""
        self._handlers = {"camera_snapshot": self._snap}

    def _snap(self, _: Mapping[str, Any]) -> None:
        self.snapshots += 1

    def snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {"streaming": True, "snapshots_taken": self.snapshots}
        if self.last_snapshot_url is not None:
            state["last_snapshot_url"] = self.last_snapshot_url
        return state


# Baseline and day-to-day spread of what lab sensors measure.
MEASURES: Mapping[str, tuple[float, float, str]] = {
    "temperature": (22.0, 0.05, "°C"),
    "humidity": (45.0, 0.2, "%"),
    "air_quality": (12.0, 0.5, "µg/m³ PM2.5"),
}


class SimulatedSensor(SimulatedDevice):
    kind = DeviceKind.SENSOR

    def __init__(self, external_id: str, measures: list[str], seed: int | None = None) -> None:
        super().__init__(external_id)
        self._rng = random.Random(seed)  # noqa: S311 - simulation noise, not security
        self.values = {m: MEASURES.get(m, (0.0, 0.1, ""))[0] for m in measures}
        self._handlers = {"sensor_read": lambda _: None}

    def tick(self, seconds: float) -> None:
        # A random walk pulled back toward the baseline, so readings wander but stay sane.
        for name, value in self.values.items():
            baseline, spread, _ = MEASURES.get(name, (0.0, 0.1, ""))
            drift = self._rng.gauss(0, spread * seconds**0.5)
            self.values[name] = value + drift + (baseline - value) * min(1.0, 0.02 * seconds)

    def snapshot(self) -> dict[str, Any]:
        return {
            name: {"value": round(value, 2), "unit": MEASURES.get(name, (0, 0, ""))[2]}
            for name, value in self.values.items()
        }


def build_simulator(spec: SimulatedDeviceSpec) -> SimulatedDevice:
    """A simulator for the device ``spec`` describes; sensors simulate their
    ``measures`` (the temperature when none is given)."""
    kind, external_id = spec.kind, spec.external_id
    if kind is DeviceKind.PRINTER:
        return SimulatedPrinter(external_id)
    if kind is DeviceKind.LIGHT:
        return SimulatedLight(external_id)
    if kind is DeviceKind.DOOR:
        return SimulatedDoor(external_id)
    if kind is DeviceKind.POWER:
        return SimulatedPower(external_id)
    if kind is DeviceKind.CAMERA:
        return SimulatedCamera(external_id)
    return SimulatedSensor(external_id, list(spec.measures) or ["temperature"])
