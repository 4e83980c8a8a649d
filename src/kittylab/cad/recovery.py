"""CAD jobs a lost run left behind: found by a periodic sweep, run again in the background,
or failed once their runs keep dying.

- ``queued`` for longer than ``QUEUED_GRACE``: the background job was never deferred (the
  queue was down, or the process died between commit and defer);
- ``running`` with the current provider attempt started longer than ``recover_after``
  ago: the process running it (an API or CLI process, for the offline pipeline) died.
  ``recover_after`` outlasts any one attempt, so a live run is not doubled; a background
  run is also covered by its queue lock.

A job is run at most ``MAX_RUNS`` times: one started that often is failed with the reason
(``abandoned``) and operators are alerted, because it keeps killing its process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import CADJob
from kittylab.cad import job_details
from kittylab.cad.job_details import Attempt
from kittylab.domain.enums import CADJobStatus

logger = logging.getLogger(__name__)

MAX_RUNS = 3
"""Runs a job gets: a job whose process died this many times is failed, not run again."""
QUEUED_GRACE = timedelta(minutes=1)
"""A ``queued`` job younger than this may still have its background job on the way."""


@dataclass(frozen=True)
class StrandedJobs:
    """What ``recover_stranded`` found: jobs to run (again) in the background, and jobs
    failed because their runs kept dying."""

    resume: list[UUID]
    abandoned: list[UUID]


class FailJob(Protocol):
    def __call__(
        self, job_id: UUID, attempts: Sequence[Attempt], *, reason: str | None = None
    ) -> int | None:
        """Fail the job with ``reason`` and alert operators; None when another run of it
        finished it meanwhile."""


def recover_stranded(
    database: Database, now: datetime, recover_after: timedelta, fail: FailJob
) -> StrandedJobs:
    """Jobs a lost run left behind, for the periodic sweep to run in the background (see
    the module docstring); those already started ``MAX_RUNS`` times go to ``fail``."""
    resume: list[UUID] = []
    exhausted: list[tuple[UUID, int, Sequence[Attempt]]] = []
    with database.unit_of_work() as session:
        queued = session.scalars(
            select(CADJob.id)
            .where(CADJob.status == CADJobStatus.QUEUED, CADJob.created_at < now - QUEUED_GRACE)
            .order_by(CADJob.created_at)
        )
        resume.extend(queued)
        for job in session.scalars(
            select(CADJob).where(CADJob.status == CADJobStatus.RUNNING).order_by(CADJob.created_at)
        ):
            if _progress_at(job) > now - recover_after:
                continue
            details = job_details.read(job)
            runs = details.runs if details.runs is not None else 1
            if runs >= MAX_RUNS:
                exhausted.append((job.id, runs, details.attempts or ()))
            else:
                resume.append(job.id)
    abandoned_jobs: list[UUID] = []
    for job_id, runs, attempts in exhausted:
        if fail(job_id, attempts, reason=abandoned(runs)) is not None:
            logger.warning("CAD job %s abandoned after %d runs", job_id, runs)
            abandoned_jobs.append(job_id)
    return StrandedJobs(resume, abandoned_jobs)


def abandoned(runs: int) -> str:
    """The reason a job whose process died ``runs`` times is failed."""
    return (
        f"started {runs} times and never finished: the process running it died or was "
        "stopped each time"
    )


def _progress_at(job: CADJob) -> datetime:
    """When the job's current provider attempt (or its run) started; jobs recorded before
    attempts were stamped count from their creation."""
    return job_details.read(job).progress_at or job.created_at
