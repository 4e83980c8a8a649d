"""Moonraker's printer objects → KittyLab's normalized printer state (pure mapping)."""

from __future__ import annotations

from typing import Any

import pytest

from kittylab.adapters.devices.moonraker import normalize_status


def status(state: str, **extra: Any) -> dict[str, dict[str, Any]]:
    return {
        "print_stats": {
            "state": state,
            "filename": "part.gcode",
            "message": "",
            "print_duration": 60.0,
        },
        "virtual_sdcard": {"progress": 0.25},
        "pause_resume": {"is_paused": False},
        "extruder": {"temperature": 214.6, "target": 215.0},
        "heater_bed": {"temperature": 60.0, "target": 60.0},
        **extra,
    }


@pytest.mark.parametrize(
    ("klipper", "phase"),
    [
        ("standby", "idle"),
        ("printing", "printing"),
        ("paused", "paused"),
        ("complete", "completed"),
        ("cancelled", "cancelled"),
        ("error", "failed"),
        ("something_new", "error"),
    ],
)
def test_every_print_stats_state_maps_to_a_printer_phase(klipper: str, phase: str) -> None:
    assert normalize_status(status(klipper), "ready")["state"] == phase


def test_a_pause_being_carried_out_already_reads_paused() -> None:
    state = normalize_status(status("printing", pause_resume={"is_paused": True}), "ready")
    assert state["state"] == "paused"


def test_a_running_job_below_its_temperatures_is_heating() -> None:
    cold = status("printing", extruder={"temperature": 120.0, "target": 215.0})
    assert normalize_status(cold, "ready")["state"] == "heating"


def test_a_failed_job_carries_klippers_message() -> None:
    failed = status("error")
    failed["print_stats"]["message"] = "Move out of range"
    assert normalize_status(failed, "ready")["failure"] == "Move out of range"


def test_a_klipper_shutdown_is_an_error_with_the_first_line_of_its_message() -> None:
    state = normalize_status(status("printing"), "shutdown", "MCU shutdown\nUse FIRMWARE_RESTART")
    assert state == {"state": "error", "failure": "MCU shutdown"}


def test_temperatures_progress_and_time_left_are_reported() -> None:
    state = normalize_status(status("printing"), "ready")
    assert state["nozzle"] == {"actual": 214.6, "target": 215.0}
    assert state["progress"] == 0.25
    assert state["seconds_left"] == 180.0  # 60 s for a quarter: 180 s to go
    assert "filament_present" not in state  # no runout sensor: not invented


def test_any_enabled_runout_sensor_without_filament_means_no_filament() -> None:
    sensors = {
        "filament_switch_sensor left": {"filament_detected": True, "enabled": True},
        "filament_switch_sensor right": {"filament_detected": False, "enabled": True},
        "filament_switch_sensor spare": {"filament_detected": False, "enabled": False},
    }
    assert normalize_status(status("printing", **sensors), "ready")["filament_present"] is False
