"""The print queue of one printer, and how a job follows its printer. Pure.

A fabrication job's ``status`` is the data model's (``preparing → printing ⇄ paused →
completed|failed|aborted``); while ``preparing`` its ``stage`` (in ``details``) says where
it is on the way to the printer:

    slicing ──▶ queued ──(printer free, bed clear)──▶ starting ──(print_start acked)──▶ printing

One job at a time per printer, first come first served, and never onto a bed that still
holds the previous part: after a job ends, someone must confirm the bed is clear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from kittylab.domain.device_state import PrinterPhase, printer_phase
from kittylab.domain.enums import FabricationStatus


class Stage(StrEnum):
    SLICING = "slicing"
    QUEUED = "queued"
    STARTING = "starting"


ACTIVE = frozenset({FabricationStatus.PRINTING, FabricationStatus.PAUSED})
FINISHED = frozenset(
    {FabricationStatus.COMPLETED, FabricationStatus.FAILED, FabricationStatus.ABORTED}
)


@dataclass(frozen=True)
class QueuedJob:
    id: UUID
    status: FabricationStatus
    stage: str | None
    created_at: datetime
    completed_at: datetime | None
    bed_cleared: bool
    started_at: datetime | None = None
    reached_printer: bool = False
    """It got as far as ``starting``: its part may be on the bed even if it never printed
    (a start that timed out may still have begun)."""


@dataclass(frozen=True)
class NextStep:
    start: UUID | None
    waiting_for: str | None
    """Why nothing starts, in words for the operator; None when a job starts or the queue
    is empty."""


def next_job(jobs: Sequence[QueuedJob]) -> NextStep:
    """Which queued job to start on a printer whose jobs are ``jobs``, if any."""
    if any(j.status in ACTIVE or j.stage == Stage.STARTING for j in jobs if not _done(j)):
        return NextStep(None, "the printer is busy with another job")
    queued = sorted(
        (j for j in jobs if j.status is FabricationStatus.PREPARING and j.stage == Stage.QUEUED),
        key=lambda j: (j.created_at, j.id),
    )
    if not queued:
        return NextStep(None, None)
    printed = [j for j in jobs if _done(j) and (j.started_at is not None or j.reached_printer)]
    if printed:
        last = max(printed, key=lambda j: (j.completed_at or j.created_at, j.id))
        if not last.bed_cleared:
            return NextStep(None, "someone must confirm the bed is clear")
    return NextStep(queued[0].id, None)


def _done(job: QueuedJob) -> bool:
    return job.status in FINISHED


@dataclass(frozen=True)
class JobUpdate:
    target: FabricationStatus | None
    reason: str | None = None


DISCONNECTED_REASON = (
    "the printer's host lost its connection to the printer (OctoPrint is not connected to "
    "it), so the print stopped; check the part before clearing the bed"
)


def following_printer(
    status: FabricationStatus, stage: str | None, command_status: str | None
) -> bool:
    """Whether the job's fate is now the printer's to report: printing or paused, or its
    ``print_start`` confirmed (until then the command decides)."""
    if status in ACTIVE:
        return True
    return (
        status is FabricationStatus.PREPARING
        and stage == Stage.STARTING
        and (command_status == "acked")
    )


def lost_printer(
    status: FabricationStatus,
    stage: str | None,
    command_status: str | None,
    unreadable_since: datetime | None,
    now: datetime,
    limit: timedelta,
    why: str | None,
) -> JobUpdate:
    """The job's next status when its printer could not be read (or is offline) this
    round, unreadable since ``unreadable_since``: failed once that has lasted ``limit``
    — the print is presumed lost, and the printer's queue must not wait forever for a
    printer that may never report again. ``None`` before then (a blip is not a failure)."""
    if unreadable_since is None or not following_printer(status, stage, command_status):
        return JobUpdate(None)
    silent = now - unreadable_since
    if silent < limit:
        return JobUpdate(None)
    detail = f" ({why})" if why else ""
    return JobUpdate(
        FabricationStatus.FAILED,
        f"lost contact with the printer: it could not be read for {silent.total_seconds():.0f} s"
        f"{detail}; the print is presumed lost. Check the printer and the part before "
        "confirming the bed clear",
    )


def follow_printer(
    status: FabricationStatus,
    stage: str | None,
    command_status: str | None,
    command_failure: str | None,
    state: Mapping[str, Any] | None,
) -> JobUpdate:
    """The job's next status given its printer's reported ``state`` and the status of the
    ``print_start`` command that began it (``None``: no change)."""
    phase = printer_phase(state)
    if status is FabricationStatus.PREPARING:
        if stage != Stage.STARTING:
            return JobUpdate(None)
        if command_status == "failed":
            return JobUpdate(FabricationStatus.FAILED, command_failure or "the printer refused")
        if command_status != "acked" or phase is None:
            return JobUpdate(None)
        if phase in (PrinterPhase.FAILED, PrinterPhase.ERROR):
            reason = (state or {}).get("failure") or "the printer reported an error"
            return JobUpdate(FabricationStatus.FAILED, str(reason))
        if phase is PrinterPhase.DISCONNECTED:
            return JobUpdate(FabricationStatus.FAILED, DISCONNECTED_REASON)
        if phase in (PrinterPhase.CANCELLED, PrinterPhase.IDLE):
            return JobUpdate(FabricationStatus.ABORTED, "the print was cancelled at the printer")
        # Heating, printing, paused, or already completed (a short print between two
        # looks): it started. A completed one completes on the next round.
        return JobUpdate(FabricationStatus.PRINTING)
    if phase is None:
        return JobUpdate(None)
    if status is FabricationStatus.PRINTING and phase is PrinterPhase.PAUSED:
        return JobUpdate(FabricationStatus.PAUSED)
    if status is FabricationStatus.PAUSED and phase in (
        PrinterPhase.PRINTING,
        PrinterPhase.HEATING,
        # Resumed and finished at the printer while nobody looked: through printing, a
        # paused job cannot complete directly.
        PrinterPhase.COMPLETED,
    ):
        return JobUpdate(FabricationStatus.PRINTING)
    if phase is PrinterPhase.COMPLETED and status is FabricationStatus.PRINTING:
        return JobUpdate(FabricationStatus.COMPLETED)
    if phase is PrinterPhase.FAILED or phase is PrinterPhase.ERROR:
        reason = (state or {}).get("failure") or "the printer reported an error"
        return JobUpdate(FabricationStatus.FAILED, str(reason))
    if phase is PrinterPhase.DISCONNECTED:
        return JobUpdate(FabricationStatus.FAILED, DISCONNECTED_REASON)
    if phase in (PrinterPhase.CANCELLED, PrinterPhase.IDLE):
        return JobUpdate(FabricationStatus.ABORTED, "the print was cancelled at the printer")
    return JobUpdate(None)


SLICE_SUFFIXES = frozenset({".stl", ".step", ".stp", ".3mf", ".obj"})
GCODE_SUFFIXES = frozenset({".gcode", ".gco", ".g"})


def needs_slicing(filename: str) -> bool | None:
    """True for a model, False for G-code, None for a file a printer cannot use."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in GCODE_SUFFIXES:
        return False
    if suffix in SLICE_SUFFIXES:
        return True
    return None
