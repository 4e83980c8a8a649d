"""The Bambu Lab LAN protocol as data: what a lab intent becomes on
``device/<serial>/request``, and what a ``push_status`` report means in KittyLab's
normalized printer state. Pure (no I/O); ``bambu.py`` does the talking.

Sources: the OpenBambuAPI documentation of the MQTT messages (``print.*`` commands,
``pushing.pushall``, the ``push_status`` object) and the behaviour of Home Assistant's
Bambu integrations (a stop leaves ``gcode_state`` FAILED with error 0300-400C).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kittylab.adapters.devices import heater_targets
from kittylab.domain import file_names
from kittylab.domain.device_state import PrinterPhase, PrinterState, Temperature
from kittylab.domain.errors import DeviceRefused

# The LAN user of the printer's MQTT broker and file server; the password is the access code.
USERNAME = "bblp"
# print_error / fail_reason the firmware reports when a job was stopped by a user
# (HMS 0300-400C, "the task was canceled"): the job is cancelled, not failed.
CANCELLED_ERROR = 0x0300400C
# The printer's SD card as the firmware names it in gcode_file paths.
DEFAULT_GCODE_ROOT = "/sdcard"
# Where a sliced project keeps its plates; print_start runs plate 1, as Bambu Studio's
# export does by default.
PLATE_MARKER = "Metadata/plate_"
FIRST_PLATE = "Metadata/plate_1.gcode"


class GcodeState(StrEnum):
    """``print.gcode_state`` as the firmware reports it."""

    IDLE = "IDLE"
    SLICING = "SLICING"
    PREPARE = "PREPARE"
    RUNNING = "RUNNING"
    PAUSE = "PAUSE"
    FINISH = "FINISH"
    FAILED = "FAILED"


_PHASES: Mapping[GcodeState, PrinterPhase] = {
    GcodeState.IDLE: PrinterPhase.IDLE,
    # Slicing and preparing (homing, levelling, heating) come before the first layer.
    GcodeState.SLICING: PrinterPhase.HEATING,
    GcodeState.PREPARE: PrinterPhase.HEATING,
    GcodeState.RUNNING: PrinterPhase.PRINTING,
    GcodeState.PAUSE: PrinterPhase.PAUSED,
    GcodeState.FINISH: PrinterPhase.COMPLETED,
    GcodeState.FAILED: PrinterPhase.FAILED,
}


def merge_report(cached: dict[str, Any], partial: Mapping[str, Any]) -> None:
    """Merge one (possibly partial) ``print`` report into the cached full one, in place.

    Nested objects merge key by key; any other value (lists included) replaces the old one,
    as the printer always sends a list whole."""
    for key, value in partial.items():
        old = cached.get(key)
        if isinstance(value, Mapping) and isinstance(old, dict):
            merge_report(old, value)
        elif isinstance(value, Mapping):
            fresh: dict[str, Any] = {}
            merge_report(fresh, value)
            cached[key] = fresh
        else:
            cached[key] = value


def error_code(value: Any) -> int:
    """A ``print_error`` / ``fail_reason`` value as an int (0 when absent or unreadable)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip() or "0")
    return 0


def format_error(code: int) -> str:
    """The firmware's error number the way Bambu's own tools show it: ``0300-400C``."""
    return f"{(code >> 16) & 0xFFFF:04X}-{code & 0xFFFF:04X}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    return None


def _temperature(report: Mapping[str, Any], actual: str, target: str) -> Temperature | None:
    now, goal = _number(report.get(actual)), _number(report.get(target))
    if now is None:
        return None
    return {"actual": now, "target": goal or 0.0}


def normalize(report: Mapping[str, Any]) -> PrinterState:
    """The merged ``print`` report in KittyLab's normalized printer shape.

    Keys the report does not carry are left out. A ``gcode_state`` the driver does not know
    reads as ``error`` with the raw value in ``failure``, never as a guess."""
    raw_state = str(report.get("gcode_state", ""))
    code = error_code(report.get("print_error")) or error_code(report.get("fail_reason"))
    failure: str | None = None
    try:
        phase = _PHASES[GcodeState(raw_state)]
    except ValueError:
        phase = PrinterPhase.ERROR
        failure = f"unknown gcode_state {raw_state!r}"
    if phase is PrinterPhase.FAILED:
        if code == CANCELLED_ERROR:
            phase = PrinterPhase.CANCELLED
        else:
            failure = f"print error {format_error(code)}" if code else "print failed"
    state: PrinterState = {"state": phase.value, "failure": failure}
    if "gcode_file" in report:
        state["file"] = _job_file(str(report["gcode_file"]), str(report.get("subtask_name") or ""))
    percent = _number(report.get("mc_percent"))
    if percent is not None:
        state["progress"] = max(0.0, min(1.0, percent / 100.0))
    nozzle = _temperature(report, "nozzle_temper", "nozzle_target_temper")
    if nozzle is not None:
        state["nozzle"] = nozzle
    bed = _temperature(report, "bed_temper", "bed_target_temper")
    if bed is not None:
        state["bed"] = bed
    minutes = _number(report.get("mc_remaining_time"))
    if minutes is not None:
        state["seconds_left"] = minutes * 60.0 if phase.busy else None
    return state


def _job_file(gcode_file: str, subtask_name: str) -> str | None:
    """The file a job was started from. A project print runs a plate inside the ``.3mf``
    (``gcode_file`` is ``…Metadata/plate_1.gcode``), so the project is named by
    ``subtask_name``, which ``print_start`` sets to the file's stem."""
    if PLATE_MARKER in gcode_file and subtask_name:
        return f"{subtask_name}.3mf"
    return gcode_file or None


@dataclass(frozen=True)
class Request:
    """One message for ``device/<serial>/request``: ``{family: {command, ...fields}}``."""

    family: str
    command: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    # The printer echoes print commands; it answers pushall with a push_status report.
    echoed: bool = True

    def payload(self, sequence_id: str) -> dict[str, Any]:
        return {self.family: {"sequence_id": sequence_id, "command": self.command, **self.fields}}


def _gcode(lines: list[str]) -> Request:
    return Request("print", "gcode_line", {"param": "".join(f"{line}\n" for line in lines)})


def request_for(
    intent: str, payload: Mapping[str, Any], gcode_root: str, who: str = "the printer"
) -> Request:
    """The printer request that carries out a lab intent; ``DeviceRefused`` (naming
    ``who``) for an intent a Bambu printer cannot carry out, a ``print_start`` file that is
    not a plain file name (``kittylab.domain.file_names``: it goes into a path, an
    ``ftp://`` URL and the printer's G-code) or a heater target that is not a temperature."""
    if intent == "print_pause":
        return Request("print", "pause", {"param": ""})
    if intent == "print_resume":
        return Request("print", "resume", {"param": ""})
    if intent == "print_cancel":
        return Request("print", "stop", {"param": ""})
    if intent == "printer_status":
        return Request("pushing", "pushall", {"version": 1, "push_target": 1}, echoed=False)
    if intent == "printer_heat":
        return _gcode(heater_targets.heat_lines(payload, who))
    if intent == "printer_cooldown":
        return _gcode(["M104 S0", "M140 S0"])
    if intent == "print_start":
        return _start_request(file_names.refuse_unless_plain(payload.get("file"), who), gcode_root)
    raise DeviceRefused(f"a Bambu Lab printer cannot {intent}")


def _start_request(name: str, gcode_root: str) -> Request:
    """``name`` is a plain file name on the card: a project (``.3mf``) at its root, where
    uploads go, or G-code under ``gcode_root``."""
    if name.lower().endswith(".3mf"):
        stem = name[: -len(".3mf")]
        return Request(
            "print",
            "project_file",
            {
                "param": FIRST_PLATE,
                # A file on the SD card (where uploads go), as the protocol documents it.
                "url": f"ftp:///{name}",
                "file": name,
                "subtask_name": stem,
                "project_id": "0",
                "profile_id": "0",
                "task_id": "0",
                "subtask_id": "0",
                "md5": "",
                "bed_type": "auto",
                "timelapse": False,
                "bed_levelling": True,
                "flow_cali": False,
                "vibration_cali": False,
                "layer_inspect": False,
                "use_ams": False,
                "ams_mapping": "",
            },
        )
    return Request("print", "gcode_file", {"param": f"{gcode_root}/{name}"})
