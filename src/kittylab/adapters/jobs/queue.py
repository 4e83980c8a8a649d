"""procrastinate on the application's own PostgreSQL: the worker's app, and the
``JobQueue`` port for synchronous callers.

Nothing here connects until ``open`` (or ``run_worker``) is called. Both accept any URL
the rest of KittyLab accepts, including ``postgresql+psycopg://`` and libpq URLs with a
unix-socket ``host`` query parameter.
"""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

import procrastinate
import psycopg
from procrastinate.exceptions import AlreadyEnqueued, ProcrastinateException

from kittylab.adapters.db.engine import libpq_url
from kittylab.adapters.jobs.tasks import (
    CAD_TASK,
    DELIVER_TASK,
    DISPATCH_TASK,
    NAMESPACE,
    PREPARE_PRINT_TASK,
    START_PRINT_TASK,
    cad_lock,
    delivery_lock,
    dispatch_lock,
    job_blueprint,
    print_queue_lock,
    schedule_in,
)
from kittylab.domain.errors import InfrastructureError

CONNECT_TIMEOUT_SECONDS = 10
POOL_TIMEOUT_SECONDS = 10.0
"""Longest wait for a free pooled connection before a defer or job fetch fails."""


class JobQueueUnavailable(InfrastructureError):
    """The job tables could not be reached; the notification row is still committed, so
    the periodic sweep delivers it once the queue is back."""


def pool_args(database_url: str, *, max_size: int, application_name: str) -> dict[str, Any]:
    """psycopg_pool arguments: every connection attempt and pool wait is bounded."""
    return {
        "conninfo": libpq_url(database_url),
        "min_size": 1,
        "max_size": max_size,
        "timeout": POOL_TIMEOUT_SECONDS,
        "kwargs": {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": application_name,
        },
    }


def build_job_app(database_url: str, *, max_connections: int = 10) -> procrastinate.App:
    """The async app a worker runs (see ``run_worker``), with the KittyLab tasks.

    A worker holds one connection for LISTEN and one per running job's bookkeeping, so
    ``max_connections`` should exceed the worker's concurrency by a few.
    """
    connector = procrastinate.PsycopgConnector(
        **pool_args(database_url, max_size=max_connections, application_name="kittylab-worker")
    )
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(job_blueprint(), namespace=NAMESPACE)
    return app


class ProcrastinateQueue:
    """``JobQueue`` for synchronous callers (API request threads, the CLI).

    It has its own small synchronous pool, separate from any worker's async pool, so it can
    be used from threads while a worker runs on the event loop. Call ``open`` before use
    and ``close`` at shutdown (or use it as a context manager).
    """

    def __init__(self, database_url: str, *, max_connections: int = 4) -> None:
        connector = procrastinate.SyncPsycopgConnector(
            **pool_args(database_url, max_size=max_connections, application_name="kittylab-queue")
        )
        self._app = procrastinate.App(connector=connector)
        # Registered here too so a defer is checked against the real task's name.
        self._app.add_tasks_from(job_blueprint(), namespace=NAMESPACE)

    def open(self) -> None:
        """Open the pool; raises ``JobQueueUnavailable`` if PostgreSQL cannot be reached."""
        try:
            self._app.open()
        except (ProcrastinateException, psycopg.Error) as exc:
            raise JobQueueUnavailable(f"cannot open the job queue: {type(exc).__name__}") from exc

    def close(self) -> None:
        self._app.close()

    def __enter__(self) -> ProcrastinateQueue:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        """Schedule delivery of a queued notification. A no-op when a delivery job for it
        is already waiting; raises ``JobQueueUnavailable`` if the job cannot be stored."""
        key = str(notification_id)
        try:
            self._app.configure_task(
                DELIVER_TASK,
                allow_unknown=False,
                queueing_lock=delivery_lock(key),
                schedule_in=schedule_in(timedelta(seconds=delay_seconds)),
            ).defer(notification_id=key)
        except AlreadyEnqueued:
            return
        except (ProcrastinateException, psycopg.Error) as exc:
            raise JobQueueUnavailable(
                f"cannot defer delivery of notification {key}: {type(exc).__name__}"
            ) from exc

    def defer_dispatch(self, command_id: UUID) -> None:
        """Schedule sending a pending device command (a no-op when a job for it waits);
        raises ``JobQueueUnavailable`` when the job cannot be stored — the command is
        committed already, so ``reconcile_commands`` sends it later."""
        key = str(command_id)
        try:
            self._app.configure_task(
                DISPATCH_TASK, allow_unknown=False, queueing_lock=dispatch_lock(key)
            ).defer(command_id=key)
        except AlreadyEnqueued:
            return
        except (ProcrastinateException, psycopg.Error) as exc:
            raise JobQueueUnavailable(
                f"cannot defer dispatch of command {key}: {type(exc).__name__}"
            ) from exc

    def defer_print_preparation(self, job_id: UUID) -> None:
        """Schedule slicing (or reading) a new print job's file."""
        self._defer(PREPARE_PRINT_TASK, None, job_id=str(job_id))

    def defer_start_next(self, device_id: UUID) -> None:
        """Let the printer's queue move (a no-op when a look is already waiting)."""
        self._defer(START_PRINT_TASK, print_queue_lock(str(device_id)), device_id=str(device_id))

    def _defer(self, task: str, lock: str | None, **kwargs: str) -> None:
        try:
            self._app.configure_task(task, allow_unknown=False, queueing_lock=lock).defer(**kwargs)
        except AlreadyEnqueued:
            return
        except (ProcrastinateException, psycopg.Error) as exc:
            raise JobQueueUnavailable(f"cannot defer {task}: {type(exc).__name__}") from exc

    def defer_cad_job(self, job_id: UUID) -> None:
        """Schedule a CAD job's run (a no-op when one waits); raises
        ``JobQueueUnavailable`` if it cannot be stored — ``resume_cad_jobs`` defers it
        later."""
        key = str(job_id)
        try:
            self._app.configure_task(
                CAD_TASK, allow_unknown=False, queueing_lock=cad_lock(key), lock=cad_lock(key)
            ).defer(cad_job_id=key)
        except AlreadyEnqueued:
            return
        except (ProcrastinateException, psycopg.Error) as exc:
            raise JobQueueUnavailable(f"cannot defer CAD job {key}: {type(exc).__name__}") from exc
