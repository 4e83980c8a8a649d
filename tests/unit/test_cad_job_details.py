"""A CAD job's details, typed (issue 14): old rows load, writes change only what changed,
and the JSON keeps its camelCase shape."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

from kittylab.adapters.db.tables import CADJob
from kittylab.cad import job_details
from kittylab.cad.job_details import Attempt, CadJobDetails, TargetPrinter

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_a_finished_job_reads_typed_and_writes_back_unchanged() -> None:
    printer, alert = uuid4(), uuid4()
    stored = {
        "requestedPolicy": "auto",
        "plannedProviders": ["zoo", "cadquery"],
        "compare": False,
        "references": [],
        "attempts": [
            {"provider": "zoo", "outcome": "busy", "error": "busy", "retryAfter": 5},
            {"provider": "cadquery", "outcome": "succeeded", "seconds": 1.2, "qualityScore": 0.9},
        ],
        "spec": {"family": "spacer", "params": {"outer_diameter": 10.0}},
        "expectedBoundingBox": [10.0, 10.0, 5.0],
        "targetPrinter": {
            "deviceId": str(printer),
            "name": "Prusa",
            "bedMm": [250.0, 210.0, 220.0],
            "bedSource": "printer bed_mm",
        },
        "runs": 1,
        "progressAt": T0.isoformat(),
        "currentProvider": "cadquery",
        "provider": "cadquery",
        "succeededProviders": ["cadquery"],
        "fallbacks": 1,
        "costUsd": "0.00",
        "alerts": [str(alert)],
        "alertWanted": True,
        "fromAnOlderVersion": 1,
    }
    job = CADJob(details=dict(stored))
    details = job_details.read(job)
    assert details.planned_providers == ("zoo", "cadquery")
    assert details.attempts is not None
    assert details.attempts[0] == Attempt("zoo", "busy", error="busy", retry_after=5.0)
    assert details.attempts[1].succeeded
    assert details.target_printer == TargetPrinter(
        printer, "Prusa", (250.0, 210.0, 220.0), "printer bed_mm"
    )
    assert details.progress_at == T0
    assert details.cost_usd == Decimal("0.00")
    assert details.alerts == (alert,)

    job_details.write(job, details)
    assert job.details == stored
    job_details.write(job, replace(details, runs=2))
    assert job.details == {**stored, "runs": 2}


def test_values_of_an_unexpected_shape_read_as_absent_and_stay_stored() -> None:
    stored = {"plannedProviders": ["cadquery"], "runs": "two", "progressAt": 7, "costUsd": 1}
    job = CADJob(details=dict(stored))
    details = job_details.read(job)
    assert (details.runs, details.progress_at, details.cost_usd) == (None, None, None)
    assert details.attempts is None
    job_details.write(job, replace(details, current_provider="cadquery"))
    assert job.details == {**stored, "currentProvider": "cadquery"}


def test_a_new_job_stores_what_it_was_asked() -> None:
    new = CadJobDetails(
        requested_policy="offline",
        planned_providers=("cadquery",),
        compare=False,
        references=(),
        attempts=(),
    )
    assert job_details.new_details(new) == {
        "requestedPolicy": "offline",
        "plannedProviders": ["cadquery"],
        "compare": False,
        "references": [],
        "attempts": [],
    }
    # A bed the printer does not state is kept as null, with why.
    target = TargetPrinter(None, "Voron", None, "settings (the printer states no bed)")
    assert target.to_json()["bedMm"] is None
