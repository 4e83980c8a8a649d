"""A fabrication job's ``details``, typed: the one place they are read and written.

``read(job)`` gives a ``JobDetails``; ``write(job, details)`` stores one back, changing only
the keys whose value changed (``domain.json_details.merged``): keys this module does not
know stay as stored. Reading is tolerant: a value of an unexpected shape reads as absent.
The keys on disk (and in the API's ``details``) are::

    stage                  slicing | queued | starting, while the job is preparing
    source_key/source_name the file the job prints or slices, and its name
    needs_slicing          a model to slice (else G-code, printed as is)
    profile                the job profile (its scenes); absent: ``default``
    printer_profile        the slicer's printer profile
    printer_file           a file already on the printer's storage (issue 16)
    idempotency_key        the client's idempotency key of the request
    requested_via          command | conversation; conversation_id
    material, ppe_confirmed, hazardous_materials {classes, materials}    (issue 13)
    filament_type, estimated_seconds, filament_mm, filament_g, slicing   what the G-code says
    gcode_violations       why the G-code policy refused the file
    queued_at, waiting_for, starting_at     the queue
    progress, printer_unreadable_since      what the printer reports
    reason                 why the job moved (failed, cancelled …)
    bed_cleared {by, at}   the bed was confirmed clear after the job
    monitor_commands       command id → {event, intent}: what monitor alerts sent
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement

from kittylab.adapters.db.tables import FabricationJob
from kittylab.domain import json_details as j
from kittylab.domain.materials import MaterialHazard
from kittylab.domain.print_queue import Stage

DEFAULT_PROFILE = "default"

_STAGE = "stage"
_IDEMPOTENCY_KEY = "idempotency_key"
_MONITOR_COMMANDS = "monitor_commands"


@dataclass(frozen=True)
class Estimates:
    """What the slicer (or the G-code's own comments) says the print takes; each of the
    three keys is written, ``null`` when unknown."""

    seconds: float | None
    filament_mm: float | None
    filament_g: float | None


@dataclass(frozen=True)
class BedCleared:
    """Who confirmed the printer's bed clear after the job, and when."""

    by: UUID | None
    at: datetime | None


@dataclass(frozen=True)
class MonitorLink:
    """A command a print monitor's alert sent for the job (``monitoring.follow_ups``)."""

    event_id: UUID
    """The monitor event that asked for it."""
    intent: str


@dataclass(frozen=True)
class JobDetails:
    stage: Stage | None = None
    source_key: str | None = None
    source_name: str | None = None
    needs_slicing: bool | None = None
    """A model to slice (False: G-code printed as is)."""
    profile: str | None = None
    """The job profile (``fabrication.scenes``); ``job_profile`` reads absent as default."""
    printer_profile: str | None = None
    printer_file: str | None = None
    idempotency_key: str | None = None
    requested_via: str | None = None
    conversation_id: UUID | None = None
    material: str | None = None
    ppe_confirmed: tuple[str, ...] = ()
    hazardous_materials: MaterialHazard | None = None
    filament_type: str | None = None
    estimates: Estimates | None = None
    slicing: Mapping[str, Any] | None = None
    """The slicer's account of the slice (``SliceResult.as_metadata``)."""
    gcode_violations: tuple[Mapping[str, Any], ...] = ()
    queued_at: datetime | None = None
    waiting_for: str | None = None
    starting_at: datetime | None = None
    progress: float | None = None
    printer_unreadable_since: datetime | None = None
    reason: str | None = None
    bed_cleared: BedCleared | None = None
    monitor_commands: Mapping[UUID, MonitorLink] = field(default_factory=dict)

    @property
    def job_profile(self) -> str:
        return self.profile or DEFAULT_PROFILE

    @property
    def reached_printer(self) -> bool:
        """It got as far as ``starting``: its part may be on the bed."""
        return self.starting_at is not None

    @property
    def estimated_seconds(self) -> float | None:
        return self.estimates.seconds if self.estimates is not None else None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> JobDetails:
        return cls(
            stage=_stage(raw.get(_STAGE)),
            source_key=j.text(raw, "source_key"),
            source_name=j.text(raw, "source_name"),
            needs_slicing=_flag(raw.get("needs_slicing")),
            profile=j.text(raw, "profile"),
            printer_profile=j.text(raw, "printer_profile"),
            printer_file=j.text(raw, "printer_file"),
            idempotency_key=j.text(raw, _IDEMPOTENCY_KEY),
            requested_via=j.text(raw, "requested_via"),
            conversation_id=j.identifier(raw, "conversation_id"),
            material=j.text(raw, "material"),
            ppe_confirmed=j.texts(raw, "ppe_confirmed"),
            hazardous_materials=_hazard(raw.get("hazardous_materials")),
            filament_type=j.text(raw, "filament_type"),
            estimates=(
                Estimates(
                    j.number(raw, "estimated_seconds"),
                    j.number(raw, "filament_mm"),
                    j.number(raw, "filament_g"),
                )
                if any(k in raw for k in ("estimated_seconds", "filament_mm", "filament_g"))
                else None
            ),
            slicing=j.mapping(raw, "slicing"),
            gcode_violations=j.objects(raw, "gcode_violations"),
            queued_at=j.timestamp(raw, "queued_at"),
            waiting_for=j.text(raw, "waiting_for"),
            starting_at=j.timestamp(raw, "starting_at"),
            progress=j.number(raw, "progress"),
            printer_unreadable_since=j.timestamp(raw, "printer_unreadable_since"),
            reason=j.text(raw, "reason"),
            bed_cleared=_bed_cleared(raw),
            monitor_commands=_links(raw.get(_MONITOR_COMMANDS)),
        )

    def to_json(self) -> dict[str, Any]:
        estimates = self.estimates
        return j.present(
            {
                _STAGE: self.stage.value if self.stage is not None else None,
                "source_key": self.source_key,
                "source_name": self.source_name,
                "needs_slicing": self.needs_slicing,
                "profile": self.profile,
                "printer_profile": self.printer_profile,
                "printer_file": self.printer_file,
                _IDEMPOTENCY_KEY: self.idempotency_key,
                "requested_via": self.requested_via,
                "conversation_id": str(self.conversation_id) if self.conversation_id else None,
                "material": self.material,
                "ppe_confirmed": list(self.ppe_confirmed) if self.ppe_confirmed else None,
                "hazardous_materials": (
                    self.hazardous_materials.as_details() if self.hazardous_materials else None
                ),
                "filament_type": self.filament_type,
                "slicing": dict(self.slicing) if self.slicing is not None else None,
                "gcode_violations": (
                    [dict(v) for v in self.gcode_violations] if self.gcode_violations else None
                ),
                "queued_at": j.stamp(self.queued_at),
                "waiting_for": self.waiting_for,
                "starting_at": j.stamp(self.starting_at),
                "progress": self.progress,
                "printer_unreadable_since": j.stamp(self.printer_unreadable_since),
                "reason": self.reason,
                "bed_cleared": (
                    {
                        "by": str(self.bed_cleared.by) if self.bed_cleared.by else None,
                        "at": j.stamp(self.bed_cleared.at),
                    }
                    if self.bed_cleared is not None
                    else None
                ),
                _MONITOR_COMMANDS: (
                    {
                        str(command): {"event": str(link.event_id), "intent": link.intent}
                        for command, link in self.monitor_commands.items()
                    }
                    if self.monitor_commands
                    else None
                ),
            }
        ) | (
            {
                "estimated_seconds": estimates.seconds,
                "filament_mm": estimates.filament_mm,
                "filament_g": estimates.filament_g,
            }
            if estimates is not None
            else {}
        )


def read(job: FabricationJob) -> JobDetails:
    """The job's details as stored."""
    return JobDetails.from_json(job.details)


def write(job: FabricationJob, details: JobDetails) -> JobDetails:
    """Store ``details`` on ``job`` (the keys that changed since ``read``; others stay)."""
    job.details = j.merged(job.details, read(job).to_json(), details.to_json())
    return details


def new_details(details: JobDetails) -> dict[str, Any]:
    """The ``details`` object of a job being created."""
    return details.to_json()


# -- in queries --------------------------------------------------------------------------


def in_stage(stage: Stage) -> ColumnElement[bool]:
    """A job whose details say ``stage``."""
    match: ColumnElement[bool] = FabricationJob.details[_STAGE].astext == stage.value
    return match


def has_idempotency_key(key: str) -> ColumnElement[bool]:
    match: ColumnElement[bool] = FabricationJob.details[_IDEMPOTENCY_KEY].astext == key
    return match


def links_command(command_id: UUID) -> ColumnElement[bool]:
    """A job one of whose monitor alerts sent ``command_id``."""
    match: ColumnElement[bool] = FabricationJob.details[_MONITOR_COMMANDS].has_key(str(command_id))
    return match


# -- tolerant readers of the nested values -------------------------------------------------


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _stage(value: object) -> Stage | None:
    """A stage this code knows (an unknown one reads as none, and stays as stored)."""
    try:
        return Stage(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _hazard(value: object) -> MaterialHazard | None:
    if not isinstance(value, dict):
        return None
    classes, materials = value.get("classes"), value.get("materials")
    if not isinstance(classes, list) or not isinstance(materials, list):
        return None
    return MaterialHazard(tuple(str(c) for c in classes), tuple(str(m) for m in materials))


def _bed_cleared(raw: Mapping[str, Any]) -> BedCleared | None:
    """Any value under the key counts as confirmed: its presence is what the queue reads."""
    if "bed_cleared" not in raw:
        return None
    value = raw["bed_cleared"]
    if not isinstance(value, dict):
        return BedCleared(None, None)
    return BedCleared(j.identifier(value, "by"), j.timestamp(value, "at"))


def _links(value: object) -> dict[UUID, MonitorLink]:
    if not isinstance(value, dict):
        return {}
    links: dict[UUID, MonitorLink] = {}
    for command, entry in value.items():
        if not isinstance(entry, dict):
            continue
        try:
            command_id = UUID(str(command))
        except ValueError:
            continue
        event_id = j.identifier(entry, "event")
        intent = j.text(entry, "intent")
        if event_id is not None and intent is not None:
            links[command_id] = MonitorLink(event_id, intent)
    return links
