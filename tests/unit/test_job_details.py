"""A fabrication job's details, typed (issue 14): old rows load, writes change only what
changed, and the JSON keeps the shape it had."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

from kittylab.adapters.db.tables import FabricationJob
from kittylab.domain.print_queue import Stage
from kittylab.fabrication import job_details
from kittylab.fabrication.job_details import BedCleared, Estimates, JobDetails, MonitorLink

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _job(details: dict[str, object]) -> FabricationJob:
    return FabricationJob(details=details)


def test_a_stored_job_reads_typed_and_writes_back_unchanged() -> None:
    command, event, user = uuid4(), uuid4(), uuid4()
    stored = {
        "stage": "queued",
        "source_key": "uploads/u/part.stl",
        "source_name": "part.stl",
        "needs_slicing": True,
        "profile": "default",
        "printer_profile": "generic-220",
        "material": "ABS",
        "ppe_confirmed": ["gloves"],
        "hazardous_materials": {"classes": ["styrene"], "materials": ["ABS"]},
        "estimated_seconds": 3600,
        "filament_mm": 1200.5,
        "filament_g": None,
        "slicing": {"slicer": "PrusaSlicer-2.8"},
        "queued_at": T0.isoformat(),
        "bed_cleared": {"by": str(user), "at": T0.isoformat()},
        "monitor_commands": {str(command): {"event": str(event), "intent": "print_pause"}},
        "legacy_note": {"kept": True},
    }
    details = job_details.read(_job(stored))
    assert details.stage is Stage.QUEUED
    assert details.needs_slicing is True
    assert details.ppe_confirmed == ("gloves",)
    assert details.hazardous_materials is not None
    assert details.hazardous_materials.classes == ("styrene",)
    assert details.estimates == Estimates(3600.0, 1200.5, None)
    assert details.queued_at == T0
    assert details.bed_cleared == BedCleared(user, T0)
    assert details.monitor_commands == {command: MonitorLink(event, "print_pause")}

    job = _job(dict(stored))
    job_details.write(job, details)
    assert job.details == stored


def test_a_write_changes_only_the_keys_that_changed() -> None:
    stored = {"stage": "starting", "starting_at": "2025-03-01T12:00:00Z", "odd": 1}
    job = _job(dict(stored))
    job_details.write(job, replace(job_details.read(job), waiting_for="busy"))
    # The timestamp's own spelling stays: it was read, not changed.
    assert job.details == {**stored, "waiting_for": "busy"}

    job_details.write(job, replace(job_details.read(job), stage=None, starting_at=None))
    assert job.details == {"odd": 1, "waiting_for": "busy"}


def test_values_of_an_unexpected_shape_read_as_absent_and_stay_stored() -> None:
    stored = {
        "stage": "printing",
        "progress": "half",
        "starting_at": "yesterday",
        "ppe_confirmed": "gloves",
        "bed_cleared": True,
        "monitor_commands": {"not-a-uuid": {"event": "x"}},
    }
    details = job_details.read(_job(stored))
    assert details.stage is None
    assert details.progress is None
    assert details.starting_at is None
    assert details.ppe_confirmed == ()
    # Its presence is what the queue reads: any value counts as confirmed.
    assert details.bed_cleared == BedCleared(None, None)
    assert details.monitor_commands == {}

    job = _job(dict(stored))
    job_details.write(job, replace(details, reason="cancelled"))
    assert job.details == {**stored, "reason": "cancelled"}


def test_a_new_job_stores_only_what_it_has() -> None:
    new = JobDetails(stage=Stage.SLICING, needs_slicing=False, idempotency_key=None)
    assert job_details.new_details(new) == {"stage": "slicing", "needs_slicing": False}
    assert job_details.new_details(JobDetails()) == {}
    # The slicer's three estimates are kept together, unknown ones as null.
    with_estimates = JobDetails(estimates=Estimates(None, 10.0, None))
    assert job_details.new_details(with_estimates) == {
        "estimated_seconds": None,
        "filament_mm": 10.0,
        "filament_g": None,
    }
