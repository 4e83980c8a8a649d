from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from kittylab.domain.enums import FabricationStatus as S
from kittylab.domain.print_queue import (
    JobUpdate,
    QueuedJob,
    Stage,
    follow_printer,
    lost_printer,
    needs_slicing,
    next_job,
)

T0 = datetime(2026, 11, 27, 9, tzinfo=UTC)


def job(
    n: int,
    status: S = S.PREPARING,
    stage: str | None = Stage.QUEUED,
    *,
    cleared: bool = False,
    started: bool = False,
) -> QueuedJob:
    finished = status in (S.COMPLETED, S.FAILED, S.ABORTED)
    return QueuedJob(
        id=UUID(int=n),
        status=status,
        stage=stage,
        created_at=T0 + timedelta(minutes=n),
        completed_at=T0 + timedelta(hours=1, minutes=n) if finished else None,
        bed_cleared=cleared,
        started_at=T0 if started or status in (S.PRINTING, S.PAUSED) else None,
    )


def test_the_oldest_queued_job_starts_on_a_free_printer() -> None:
    assert next_job([job(2), job(1), job(3, stage=Stage.SLICING)]).start == UUID(int=1)


def test_nothing_starts_while_a_job_prints_or_is_starting() -> None:
    for busy in (job(1, S.PRINTING, None), job(1, S.PAUSED, None), job(1, stage=Stage.STARTING)):
        step = next_job([busy, job(2)])
        assert step.start is None
        assert step.waiting_for == "the printer is busy with another job"


def test_the_next_job_waits_until_someone_confirms_the_bed_is_clear() -> None:
    done = job(1, S.COMPLETED, None, started=True)
    assert next_job([done, job(2)]).waiting_for == "someone must confirm the bed is clear"
    cleared = job(1, S.COMPLETED, None, started=True, cleared=True)
    assert next_job([cleared, job(2)]).start == UUID(int=2)


def test_a_job_that_never_reached_the_bed_needs_no_clearing() -> None:
    sliced_badly = job(1, S.FAILED, Stage.SLICING)
    assert next_job([sliced_badly, job(2)]).start == UUID(int=2)


def test_an_empty_queue_waits_for_nothing() -> None:
    assert next_job([job(1, S.COMPLETED, None, started=True, cleared=True)]).waiting_for is None


@pytest.mark.parametrize(
    ("status", "stage", "command", "state", "expected"),
    [
        (S.PREPARING, Stage.STARTING, "acked", {"state": "heating"}, S.PRINTING),
        (S.PREPARING, Stage.STARTING, "sent", {"state": "heating"}, None),
        (S.PREPARING, Stage.STARTING, "failed", None, S.FAILED),
        (S.PREPARING, Stage.QUEUED, None, {"state": "printing"}, None),
        (S.PRINTING, None, "acked", {"state": "paused"}, S.PAUSED),
        (S.PAUSED, None, "acked", {"state": "printing"}, S.PRINTING),
        (S.PRINTING, None, "acked", {"state": "completed"}, S.COMPLETED),
        (S.PAUSED, None, "acked", {"state": "completed"}, S.PRINTING),  # then completed
        (S.PREPARING, Stage.STARTING, "acked", {"state": "completed"}, S.PRINTING),
        (S.PREPARING, Stage.STARTING, "acked", {"state": "failed"}, S.FAILED),
        (S.PREPARING, Stage.STARTING, "acked", {"state": "idle"}, S.ABORTED),
        (S.PRINTING, None, "acked", {"state": "failed", "failure": "clog"}, S.FAILED),
        (S.PAUSED, None, "acked", {"state": "cancelled"}, S.ABORTED),
        (S.PRINTING, None, "acked", {"state": "printing"}, None),
        (S.PRINTING, None, "acked", None, None),
        (S.PRINTING, None, "acked", {"state": "disconnected"}, S.FAILED),
        (S.PAUSED, None, "acked", {"state": "disconnected"}, S.FAILED),
        (S.PREPARING, Stage.STARTING, "acked", {"state": "disconnected"}, S.FAILED),
        (S.PREPARING, Stage.STARTING, "sent", {"state": "disconnected"}, None),
    ],
)
def test_a_job_follows_what_its_printer_reports(
    status: S,
    stage: str | None,
    command: str | None,
    state: dict[str, str] | None,
    expected: S | None,
) -> None:
    assert follow_printer(status, stage, command, "refused", state).target is expected


def test_a_printer_failure_names_its_reason() -> None:
    update = follow_printer(S.PRINTING, None, "acked", None, {"state": "failed", "failure": "clog"})
    assert update == JobUpdate(S.FAILED, "clog")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("part.STL", True),
        ("part.step", True),
        ("part.gcode", False),
        ("a.g", False),
        ("x.pdf", None),
        ("noext", None),
    ],
)
def test_files_are_sliced_by_kind(name: str, expected: bool | None) -> None:
    assert needs_slicing(name) is expected


def test_a_job_whose_start_reached_the_printer_needs_the_bed_cleared_even_if_it_failed() -> None:
    failed_start = QueuedJob(
        id=UUID(int=1),
        status=S.FAILED,
        stage=Stage.STARTING,
        created_at=T0,
        completed_at=T0,
        bed_cleared=False,
        reached_printer=True,
    )
    assert next_job([failed_start, job(2)]).waiting_for == "someone must confirm the bed is clear"


def test_a_printer_whose_host_disconnected_from_it_fails_the_job_with_that_reason() -> None:
    update = follow_printer(S.PRINTING, None, "acked", None, {"state": "disconnected"})
    assert update.target is S.FAILED
    assert update.reason is not None and "lost its connection to the printer" in update.reason


LIMIT = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("status", "stage", "command"),
    [
        (S.PRINTING, None, "acked"),
        (S.PAUSED, None, "acked"),
        (S.PREPARING, Stage.STARTING, "acked"),
    ],
)
def test_a_job_whose_printer_stays_unreadable_past_the_limit_fails_naming_why(
    status: S, stage: str | None, command: str
) -> None:
    since = T0
    assert lost_printer(status, stage, command, since, T0 + LIMIT / 2, LIMIT, "x").target is None
    update = lost_printer(status, stage, command, since, T0 + LIMIT, LIMIT, "OctoPrint is down")
    assert update.target is S.FAILED
    assert update.reason is not None
    assert "could not be read for 300 s (OctoPrint is down)" in update.reason


@pytest.mark.parametrize(
    ("status", "stage", "command"),
    [
        (S.PREPARING, Stage.STARTING, "sent"),  # the start command decides, not the silence
        (S.PREPARING, Stage.QUEUED, None),
        (S.COMPLETED, None, "acked"),
    ],
)
def test_a_job_not_yet_or_no_longer_on_its_printer_is_not_failed_by_its_silence(
    status: S, stage: str | None, command: str | None
) -> None:
    assert lost_printer(status, stage, command, T0, T0 + 10 * LIMIT, LIMIT, None).target is None
