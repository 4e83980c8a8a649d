"""What a payload from the bus must be before anything acts on it or stores it
(issue 13: one NaN once took the whole demo lab offline)."""

from __future__ import annotations

import pytest

from kittylab.domain.devices import INTENT_CATALOGUE, validate_command
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import DeviceRefused, PayloadTooLarge, ValidationFailed
from kittylab.domain.payload_checks import (
    check_device_state,
    check_finite,
    non_finite_path,
    parse_bus_json,
)
from kittylab.simulator.devices import SimulatedPrinter


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"t": NaN}', "payload"),
        (b'{"t": -Infinity}', "payload"),
        (b'{"t": [1, 1e999]}', "payload.t.1"),
        (b'{"t": 1' + b"0" * 400 + b"}", "payload.t"),
        (b"[" * 33 + b"]" * 33, "payload"),
        (b"[" * 100_000 + b"]" * 100_000, "payload"),
        (b"\xff", "payload"),
    ],
)
def test_bus_json_that_is_not_strict_finite_and_shallow_is_refused(raw: bytes, field: str) -> None:
    with pytest.raises((ValidationFailed, PayloadTooLarge)) as refused:
        parse_bus_json(raw)
    assert getattr(refused.value, "field", None) == field


def test_bus_json_within_the_limits_is_taken_as_is() -> None:
    assert parse_bus_json(b'{"t": [1, 2.5, true, null, "NaN"]}') == {
        "t": [1, 2.5, True, None, "NaN"]
    }
    assert parse_bus_json(b"[" * 32 + b"]" * 32) is not None
    with pytest.raises(PayloadTooLarge):
        parse_bus_json(b'"' + b"x" * 70_000 + b'"')


def test_non_finite_numbers_are_found_wherever_they_nest() -> None:
    assert non_finite_path({"a": [{"b": float("nan")}]}) == "a.0.b"
    assert non_finite_path(float("inf")) == ""
    assert non_finite_path({"a": 10**400}) == "a"
    assert non_finite_path({"a": [1, 2.5, True, "inf"], "b": 10**300}) is None
    with pytest.raises(ValidationFailed, match="finite"):
        check_finite({"nozzle": float("nan")})


def test_a_command_with_nan_is_refused_although_json_schema_lets_it_pass_its_bounds() -> None:
    """``minimum``/``maximum`` compare false with NaN, so the schema alone accepted it."""
    capabilities = {"printer_heat": dict(INTENT_CATALOGUE["printer_heat"])}
    for payload in ({"nozzle": float("nan")}, {"bed": float("inf")}, {"nozzle": "nan"}):
        with pytest.raises(ValidationFailed) as refused:
            validate_command(capabilities, "printer_heat", payload)
        assert refused.value.field in ("payload", "payload.nozzle", "payload.bed")
    validate_command(capabilities, "printer_heat", {"nozzle": 215, "bed": 60.5})


@pytest.mark.parametrize(
    ("kind", "state", "field"),
    [
        (DeviceKind.PRINTER, {"state": "printing", "nozzle": {"actual": "hot"}}, "s.nozzle.actual"),
        (DeviceKind.PRINTER, {"state": "on fire"}, "s.state"),
        (DeviceKind.PRINTER, {"nozzle": {"actual": 20}}, "s"),
        (DeviceKind.PRINTER, {"state": "idle", "progress": 7}, "s.progress"),
        (DeviceKind.LIGHT, {"on": "yes"}, "s.on"),
        (DeviceKind.LIGHT, [True], "s"),
        (DeviceKind.DOOR, {"locked": 0}, "s.locked"),
        (DeviceKind.POWER, {"on": True, "watts": "many"}, "s.watts"),
        (DeviceKind.SENSOR, {"temperature": {"value": "warm"}}, "s.temperature.value"),
    ],
)
def test_a_state_its_kind_cannot_have_is_refused_naming_the_key(
    kind: DeviceKind, state: object, field: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_device_state(kind, state, "s")
    assert refused.value.field == field


def test_normalized_states_and_keys_a_kind_does_not_define_pass() -> None:
    check_device_state(
        DeviceKind.PRINTER,
        {"state": "printing", "nozzle": {"actual": 210.1, "target": 210}, "chamber": 40},
    )
    check_device_state(DeviceKind.LIGHT, {"on": True, "brightness": 30})
    check_device_state(DeviceKind.SENSOR, {"temperature": {"value": 21.5, "unit": "°C"}})
    check_device_state(DeviceKind.SENSOR, {"locked": False})  # what else a sensor says


def test_a_simulated_printer_takes_no_heater_target_its_firmware_would_not() -> None:
    printer = SimulatedPrinter("p")
    for payload in ({"nozzle": float("nan")}, {"bed": 151}, {"nozzle": "200"}, {"nozzle": True}):
        with pytest.raises(DeviceRefused):
            printer.handle("printer_heat", payload)
    with pytest.raises(DeviceRefused):
        printer.handle("printer_heat", {"nozzle": 200, "bed": float("inf")})
    assert (printer.nozzle_target, printer.bed_target) == (0.0, 0.0)  # nothing half-applied
    printer.handle("printer_heat", {"nozzle": 200, "bed": 60})
    assert (printer.nozzle_target, printer.bed_target) == (200.0, 60.0)
