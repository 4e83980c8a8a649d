import pytest

from kittylab.domain.devices import DEFAULT_INTENTS
from kittylab.domain.enums import DeviceKind
from kittylab.domain.simulated_lab import SimulatedDeviceSpec
from kittylab.simulator.devices import (
    DeviceRefused,
    PrinterState,
    SimulatedDoor,
    SimulatedLight,
    SimulatedPower,
    SimulatedPrinter,
    SimulatedSensor,
    build_simulator,
)


def _run(printer: SimulatedPrinter, seconds: int) -> None:
    for _ in range(seconds):
        printer.tick(1.0)


def test_printer_heats_then_prints_with_progress_then_completes() -> None:
    printer = SimulatedPrinter("prusa-mk4", print_seconds=120)
    printer.handle("print_start", {"file": "bracket.gcode"})
    assert printer.state is PrinterState.HEATING
    _run(printer, 10)
    assert 22 < printer.nozzle < 215
    assert printer.progress == 0
    _run(printer, 120)
    assert printer.state is PrinterState.PRINTING
    assert 0 < printer.progress < 1
    _run(printer, 200)
    snap = printer.snapshot()
    assert snap["state"] == "completed" and snap["progress"] == 1.0
    assert snap["nozzle"]["target"] == 0.0  # heaters off after the job


def test_pause_resume_and_refusals_follow_printer_state() -> None:
    printer = SimulatedPrinter("voron-24")
    with pytest.raises(DeviceRefused, match="not printing"):
        printer.handle("print_pause", {})
    printer.handle("print_start", {"file": "a.gcode"})
    _run(printer, 150)
    printer.handle("print_pause", {})
    progress = printer.progress
    _run(printer, 30)
    assert printer.progress == progress  # a paused job does not advance
    with pytest.raises(DeviceRefused):
        printer.handle("print_start", {"file": "b.gcode"})
    printer.handle("print_resume", {})
    _run(printer, 5)
    assert printer.progress > progress


def test_printer_can_be_told_to_fail() -> None:
    printer = SimulatedPrinter("bambu-x1c")
    printer.handle("print_start", {"file": "a.gcode"})
    printer.fail("spaghetti")
    assert printer.snapshot()["state"] == "failed"
    assert printer.snapshot()["failure"] == "spaghetti"
    with pytest.raises(DeviceRefused):
        printer.fail("again")


def test_lights_doors_and_power_keep_state_and_start_safe() -> None:
    light = SimulatedLight("farm-lights")
    light.handle("light_set_brightness", {"brightness": 30})
    assert light.snapshot() == {"on": True, "brightness": 30}
    light.handle("light_off", {})
    assert light.snapshot() == {"on": False, "brightness": 0}
    door, power = SimulatedDoor("laser-door"), SimulatedPower("laser-power")
    assert door.snapshot() == {"locked": True}
    assert power.snapshot()["on"] is False
    door.handle("door_unlock", {})
    power.handle("power_on", {})
    assert door.snapshot() == {"locked": False}
    assert power.snapshot()["watts"] > 0


def test_sensor_readings_wander_but_stay_near_baseline() -> None:
    sensor = SimulatedSensor("farm-climate", ["temperature", "humidity"], seed=7)
    readings = []
    for _ in range(3600):
        sensor.tick(1.0)
        readings.append(sensor.values["temperature"])
    assert len(set(readings)) > 100
    assert all(15 < r < 29 for r in readings)
    assert set(sensor.snapshot()) == {"temperature", "humidity"}


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_every_kind_has_a_simulator_handling_its_default_intents(kind: DeviceKind) -> None:
    sim = build_simulator(SimulatedDeviceSpec("x", kind, "zone", "x", measures=("air_quality",)))
    assert set(DEFAULT_INTENTS[kind]) <= sim.intents
    with pytest.raises(DeviceRefused, match="cannot"):
        sim.handle("warp_drive", {})
