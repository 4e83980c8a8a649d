"""The normalized state every device driver reports, per device kind.

Drivers translate what their device says (OctoPrint's job API, Moonraker's
``print_stats``, a Bambu ``push_status`` report, a Home Assistant entity) into these
shapes, so the rest of KittyLab — command confirmation, print monitoring, the API — never
sees a vendor's vocabulary. The simulated devices report exactly these shapes too.

Keys a driver cannot know are omitted, never invented; consumers must treat every key as
optional except the ones marked required below.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NotRequired, TypedDict


class PrinterPhase(StrEnum):
    """What a printer is doing. Every vendor state maps onto one of these."""

    IDLE = "idle"  # ready, no job (also: operational, standby, ready)
    HEATING = "heating"  # a job started and is waiting for temperatures
    PRINTING = "printing"
    PAUSED = "paused"  # also: pausing (a pause requested and being carried out)
    COMPLETED = "completed"  # the last job finished; the bed may not be clear
    FAILED = "failed"  # the last job stopped on an error
    CANCELLED = "cancelled"  # the last job was cancelled
    ERROR = "error"  # the printer itself is in an error state (not a job outcome)
    # Its host answers but is not connected to the printer (OctoPrint "Closed"): no job
    # can be running; a start or heat connects it first.
    DISCONNECTED = "disconnected"

    @property
    def busy(self) -> bool:
        """A job is in progress: a new one cannot start."""
        return self in (PrinterPhase.HEATING, PrinterPhase.PRINTING, PrinterPhase.PAUSED)


def printer_phase(state: Mapping[str, Any] | None) -> PrinterPhase | None:
    """The phase a printer state reports, or None when there is no (valid) state."""
    if not state:
        return None
    try:
        return PrinterPhase(str(state.get("state")))
    except ValueError:
        return None


class Temperature(TypedDict):
    actual: float
    target: float  # 0 when the heater is off


class PrinterState(TypedDict):
    state: str  # required: a PrinterPhase value
    file: NotRequired[str | None]  # the selected / printing file name
    progress: NotRequired[float]  # 0.0-1.0 of the current job
    nozzle: NotRequired[Temperature]
    bed: NotRequired[Temperature]
    failure: NotRequired[str | None]  # why the last job failed, when it did
    filament_present: NotRequired[bool]  # from a runout sensor, when the printer has one
    seconds_left: NotRequired[float | None]


class LightState(TypedDict):
    on: bool  # required
    brightness: NotRequired[int]  # 0-100; 0 when off


class DoorState(TypedDict):
    locked: bool  # required


class PowerState(TypedDict):
    on: bool  # required
    watts: NotRequired[float]


class CameraState(TypedDict):
    streaming: NotRequired[bool]
    snapshots_taken: NotRequired[int]  # increases by one per camera_snapshot
    last_snapshot_url: NotRequired[str | None]


class SensorReading(TypedDict):
    value: float
    unit: str


# A sensor's state maps each measure name ("temperature", "humidity" …) to a SensorReading.
SensorState = dict[str, SensorReading]
