"""OctoPrint's states in KittyLab's words: the states a live test cannot hold still
(Cancelling, Finishing, Starting, waiting on M109) and the edges of the mapping."""

from __future__ import annotations

from typing import Any

import pytest

from kittylab.adapters.devices.octoprint_state import needs_last_print, printer_state_from
from kittylab.domain.device_state import PrinterPhase

IDLE_FLAGS = {
    "operational": True,
    "printing": False,
    "cancelling": False,
    "pausing": False,
    "resuming": False,
    "finishing": False,
    "closedOrError": False,
    "error": False,
    "paused": False,
    "ready": True,
}


def _job(
    text: str, file: str | None = "part.gcode", completion: float | None = None
) -> dict[str, Any]:
    return {
        "state": text,
        "job": {"file": {"name": file, "path": file, "origin": "local" if file else None}},
        "progress": {"completion": completion, "printTimeLeft": 120 if completion else None},
    }


def _printer(
    nozzle: tuple[float, float] = (21.3, 0.0),
    bed: tuple[float, float] = (21.3, 0.0),
    **flags: bool,
) -> dict[str, Any]:
    return {
        "state": {"text": "", "flags": {**IDLE_FLAGS, **flags}, "error": ""},
        "temperature": {
            "tool0": {"actual": nozzle[0], "target": nozzle[1], "offset": 0},
            "bed": {"actual": bed[0], "target": bed[1], "offset": 0},
        },
    }


@pytest.mark.parametrize(
    ("text", "flags", "phase"),
    [
        ("Starting", {"printing": True, "ready": False}, "printing"),
        ("Printing from SD", {"printing": True, "ready": False}, "printing"),
        ("Resuming", {"printing": True, "resuming": True}, "printing"),
        ("Finishing", {"printing": True, "finishing": True}, "printing"),
        ("Pausing", {"printing": True, "pausing": True}, "paused"),
        ("Paused", {"paused": True}, "paused"),
        ("Cancelling", {"printing": True, "cancelling": True}, "cancelled"),
    ],
)
def test_job_states_map_onto_printer_phases(text: str, flags: dict[str, bool], phase: str) -> None:
    state = printer_state_from(_job(text, completion=42.0), _printer(**flags), None)
    assert state["state"] == phase
    assert state["progress"] == pytest.approx(0.42)
    assert state["file"] == "part.gcode"


def test_printing_while_a_heater_is_far_below_its_target_is_heating() -> None:
    cold = _printer(nozzle=(120.0, 215.0), bed=(60.0, 60.0), printing=True)
    warm = _printer(nozzle=(213.0, 215.0), bed=(59.0, 60.0), printing=True)
    assert printer_state_from(_job("Printing", completion=1.0), cold, None)["state"] == "heating"
    assert printer_state_from(_job("Printing", completion=1.0), warm, None)["state"] == "printing"


def test_paused_printer_cooling_down_stays_paused() -> None:
    cooling = _printer(nozzle=(150.0, 215.0), paused=True)
    assert printer_state_from(_job("Paused", completion=30.0), cooling, None)["state"] == "paused"


def test_operational_with_the_selected_job_at_full_progress_is_completed() -> None:
    state = printer_state_from(_job("Operational", completion=100.0), _printer(), None)
    assert (state["state"], state["progress"]) == ("completed", 1.0)
    assert "seconds_left" not in state


def test_operational_after_an_unsuccessful_last_print_is_cancelled() -> None:
    assert printer_state_from(_job("Operational"), _printer(), False)["state"] == "cancelled"


@pytest.mark.parametrize(("file", "last"), [(None, None), ("part.gcode", None), ("p.gcode", True)])
def test_operational_without_an_unfinished_failed_job_is_idle(
    file: str | None, last: bool | None
) -> None:
    state = printer_state_from(_job("Operational", file=file), _printer(), last)
    assert state["state"] == "idle"
    assert state["file"] == file
    assert "progress" not in state


def test_error_reports_octoprints_error_as_the_failure() -> None:
    job = {**_job("Offline after error", file=None), "error": "MAXTEMP triggered!"}
    assert printer_state_from(job, None, None) == {
        "state": "error",
        "failure": "MAXTEMP triggered!",
    }


@pytest.mark.parametrize("text", ["Offline", "Closed", "Detecting serial connection"])
def test_a_printer_octoprint_is_not_connected_to_is_reachable_but_disconnected(
    text: str,
) -> None:
    # Not unavailable: OctoPrint answers, and a start or heat connects the printer first.
    state = printer_state_from(_job(text, file=None), None, None)
    assert state == {"state": "disconnected", "file": None}
    assert not PrinterPhase(state["state"]).busy


def test_temperatures_come_from_the_configured_tool_and_the_bed() -> None:
    printer = _printer(bed=(55.5, 60.0))
    printer["temperature"]["tool1"] = {"actual": 190.0, "target": 200.0}
    state = printer_state_from(_job("Operational"), printer, None, tool="tool1")
    assert state["nozzle"] == {"actual": 190.0, "target": 200.0}
    assert state["bed"] == {"actual": 55.5, "target": 60.0}


def test_progress_and_time_left_while_printing() -> None:
    state = printer_state_from(_job("Printing", completion=150.0), _printer(printing=True), None)
    assert state["progress"] == 1.0  # clamped
    assert state["seconds_left"] == 120.0


def test_file_history_is_needed_only_for_an_idle_unfinished_selection() -> None:
    assert needs_last_print(_job("Operational"), _printer())
    assert not needs_last_print(_job("Operational", completion=100.0), _printer())
    assert not needs_last_print(_job("Operational", file=None), _printer())
    assert not needs_last_print(_job("Printing", completion=5.0), _printer(printing=True))
    assert not needs_last_print(_job("Offline"), None)
