"""Recovery of jobs whose worker died.

A worker killed outright (``kill -9``, a lost machine) leaves its jobs ``doing`` forever:
nothing else ever finishes them. Every live worker records a heartbeat (every
``jobs.heartbeat_interval_seconds``); a job is stalled when its worker's heartbeat is
older than ``jobs.stalled_worker_timeout_seconds``, or its worker row is gone (a starting
worker prunes dead ones). ``recover_stalled_jobs`` puts such jobs back to ``todo`` to run
again as soon as possible.

Running a job twice is safe for every KittyLab task: a delivery is guarded by the
notification's claim (see ``kittylab.records.notifications``), and the periodic tasks are
idempotent. A stalled job whose queueing lock is already taken by a waiting job (the sweep
deferred a fresh delivery for the same notification, say) is not retried, since the
waiting job does the same work; it is marked ``failed`` so it stays visible.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import procrastinate
import psycopg
from procrastinate.exceptions import ConnectorException, UniqueViolation
from procrastinate.jobs import Status
from procrastinate.manager import QUEUEING_LOCK_CONSTRAINT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """What one ``recover_stalled_jobs`` run did, by job id."""

    retried: list[int] = field(default_factory=list)
    """Back to ``todo``, due now."""
    superseded: list[int] = field(default_factory=list)
    """Marked ``failed``: a waiting job with the same queueing lock does the same work."""


async def recover_stalled_jobs(
    app: procrastinate.App, *, seconds_since_heartbeat: float
) -> Recovery:
    """Retry every ``doing`` job whose worker has been silent for longer than
    ``seconds_since_heartbeat`` (or is gone). A job that finished between the look-up and
    the retry is left alone. ``app`` must be open."""
    stalled = list(
        await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    )
    recovery = Recovery()
    for job in stalled:
        if job.id is None:  # every stored job has one; this satisfies the type
            continue
        try:
            await app.job_manager.retry_job(job)
        except UniqueViolation as exc:
            if exc.constraint_name != QUEUEING_LOCK_CONSTRAINT:
                raise
            if await _finish(app, job.id, Status.FAILED):
                recovery.superseded.append(job.id)
            continue
        except ConnectorException as exc:
            if not _moved_on(exc):
                raise
            continue
        recovery.retried.append(job.id)
    if stalled:
        logger.warning(
            "recovered %d stalled jobs of dead workers",
            len(recovery.retried) + len(recovery.superseded),
            extra={
                "retried": recovery.retried,
                "superseded": recovery.superseded,
                "tasks": sorted({job.task_name for job in stalled}),
            },
        )
    return recovery


async def _finish(app: procrastinate.App, job_id: int, status: Status) -> bool:
    try:
        await app.job_manager.finish_job_by_id_async(job_id, status, delete_job=False)
    except ConnectorException as exc:
        if not _moved_on(exc):
            raise
        return False
    return True


def _moved_on(exc: ConnectorException) -> bool:
    """True when the database refused because the job is no longer ``doing`` (its
    procedures raise a plain exception for that), as opposed to a connection failure."""
    return isinstance(exc.__cause__, psycopg.errors.RaiseException)
