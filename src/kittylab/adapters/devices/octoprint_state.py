"""OctoPrint's answers (``GET /api/job``, ``GET /api/printer``) in KittyLab's words: the
normalized ``PrinterState``. Pure: no I/O; the driver in ``octoprint.py`` fetches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kittylab.domain.device_state import PrinterPhase, PrinterState, Temperature

# OctoPrint's state texts (``MachineCom.getStateString``) that mean "not connected" and
# "stopped on an error"; while connecting it reports yet other texts.
CLOSED_STATES = frozenset({"Offline", "Closed"})
ERROR_STATES = frozenset({"Error", "Offline after error"})
# A printing printer whose heater is this far below its target is waiting for it (M109/M190).
HEATING_MARGIN_C = 5.0


def printer_state_from(
    job: Mapping[str, Any],
    printer: Mapping[str, Any] | None,
    last_print_succeeded: bool | None,
    *,
    tool: str = "tool0",
) -> PrinterState:
    """Normalize OctoPrint's ``/api/job`` and ``/api/printer`` answers.

    - ``Error`` / ``Offline after error`` (or the error flag) → ``error``, with
      OctoPrint's error text as ``failure`` (a job running then has failed with it);
    - ``Cancelling`` → ``cancelled``; ``Pausing`` and ``Paused`` → ``paused``;
    - ``Starting``, ``Printing``, ``Printing from SD``, ``Resuming``, ``Finishing`` →
      ``printing``, or ``heating`` while a heater with a target is more than
      ``HEATING_MARGIN_C`` below it (the job waits on M109/M190);
    - ``Operational`` → ``completed`` when the selected file's job is at 100 %;
      ``cancelled`` when it is not and that file's last print did not succeed (OctoPrint
      records cancelled and failed prints alike in the file's history); else ``idle``;
    - not connected (``Offline``, ``Closed``) or still connecting → ``disconnected``:
      OctoPrint answers, so the printer is reachable — it is not unavailable, or a start
      or heat (which connect it first) would be refused for a printer one request away
      from working — but no job can be running on it.

    ``progress`` is ``job.progress.completion`` / 100; ``seconds_left`` is OctoPrint's
    estimate while a job is busy; ``nozzle`` is ``tool``, ``bed`` the bed.
    """
    text = str(job.get("state", ""))
    flags = state_flags(printer)
    error = job.get("error") or dig(printer, "state", "error") or None
    if text in ERROR_STATES or flags.get("error"):
        return {"state": PrinterPhase.ERROR.value, "failure": str(error or text)}
    if printer is None or not flags.get("operational"):
        return {"state": PrinterPhase.DISCONNECTED.value, "file": None}

    completion = dig(job, "progress", "completion")
    progress = None if completion is None else min(1.0, max(0.0, float(completion) / 100))
    file = job_file(job)
    result: PrinterState = {"state": PrinterPhase.IDLE.value, "file": file}
    nozzle, bed = _temperature(printer, tool), _temperature(printer, "bed")
    if nozzle is not None:
        result["nozzle"] = nozzle
    if bed is not None:
        result["bed"] = bed

    if flags.get("cancelling"):
        phase = PrinterPhase.CANCELLED
    elif flags.get("pausing") or flags.get("paused"):
        phase = PrinterPhase.PAUSED
    elif flags.get("printing") or flags.get("resuming") or flags.get("finishing"):
        phase = PrinterPhase.HEATING if _waiting_for_heat(result) else PrinterPhase.PRINTING
    elif file is not None and completion is not None and float(completion) >= 100:
        phase = PrinterPhase.COMPLETED
    elif file is not None and last_print_succeeded is False:
        phase = PrinterPhase.CANCELLED
    else:
        phase = PrinterPhase.IDLE
    result["state"] = phase.value
    if progress is not None:
        result["progress"] = progress
    if phase.busy:
        left = dig(job, "progress", "printTimeLeft")
        result["seconds_left"] = None if left is None else float(left)
    return result


def needs_last_print(job: Mapping[str, Any], printer: Mapping[str, Any] | None) -> bool:
    """Only an operational, idle printer with a selected, unfinished file needs the file's
    print history to tell ``cancelled`` from ``idle``."""
    flags = state_flags(printer)
    completion = dig(job, "progress", "completion")
    return (
        bool(flags.get("operational"))
        and not flags.get("printing")
        and not flags.get("paused")
        and not flags.get("error")
        and job_file(job) is not None
        and (completion is None or float(completion) < 100)
    )


def _waiting_for_heat(state: PrinterState) -> bool:
    return any(
        heater["target"] > 0 and heater["actual"] < heater["target"] - HEATING_MARGIN_C
        for heater in (state.get("nozzle"), state.get("bed"))
        if heater is not None
    )


def _temperature(printer: Mapping[str, Any] | None, name: str) -> Temperature | None:
    reading = dig(printer, "temperature", name)
    if not isinstance(reading, Mapping) or reading.get("actual") is None:
        return None
    return {"actual": float(reading["actual"]), "target": float(reading.get("target") or 0.0)}


def state_flags(printer: Mapping[str, Any] | None) -> Mapping[str, Any]:
    flags = dig(printer, "state", "flags")
    return flags if isinstance(flags, Mapping) else {}


def job_file(job: Mapping[str, Any]) -> str | None:
    path = dig(job, "job", "file", "path") or dig(job, "job", "file", "name")
    return str(path) if path else None


def still_connecting(text: str) -> bool:
    """Opening/detecting the serial port, connecting: not operational yet, not failed."""
    return text.startswith(("Opening", "Detecting", "Connecting"))


def dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
