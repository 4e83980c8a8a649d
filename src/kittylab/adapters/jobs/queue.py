"""procrastinate on the application's own PostgreSQL: the ``JobQueue`` port for
synchronous callers, and the connection pool the worker's app uses too
(``kittylab.worker.run.build_job_app``).

Nothing here connects until ``open`` is called. Any URL the rest of KittyLab accepts
works, including ``postgresql+psycopg://`` and libpq URLs with a unix-socket ``host``
query parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

import procrastinate
import psycopg
from procrastinate.exceptions import AlreadyEnqueued, ProcrastinateException

from kittylab.adapters.db.engine import libpq_url
from kittylab.adapters.jobs.deferrals import DEFERRALS, Deferred, configured
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
        # No task is registered here: the tasks are the worker's (``kittylab.worker``)
        # and call every use case. Jobs are deferred by the names of the one table
        # (``deferrals.DEFERRALS``); tests/unit/test_dependency_rules.py checks that the
        # worker registers each of them with its argument.
        self._app = procrastinate.App(connector=connector)

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
        self._defer(Deferred.DELIVERY, notification_id, timedelta(seconds=delay_seconds))

    def defer_dispatch(self, command_id: UUID) -> None:
        """Schedule sending a pending device command (a no-op when a job for it waits);
        raises ``JobQueueUnavailable`` when the job cannot be stored — the command is
        committed already, so ``reconcile_commands`` sends it later."""
        self._defer(Deferred.DISPATCH, command_id)

    def defer_dispatch_in_order(self, command_ids: Sequence[UUID]) -> None:
        """Schedule sending ``command_ids`` in order with one job (a stop's; see
        ``safety.stop.send_in_order``); ``JobQueueUnavailable`` as ``defer_dispatch``."""
        self._defer_key(Deferred.DISPATCH_IN_ORDER, ",".join(str(c) for c in command_ids))

    def defer_print_preparation(self, job_id: UUID) -> None:
        """Schedule slicing (or reading) a new print job's file."""
        self._defer(Deferred.PREPARATION, job_id)

    def defer_start_next(self, device_id: UUID) -> None:
        """Let the printer's queue move (a no-op when a look is already waiting)."""
        self._defer(Deferred.START_NEXT, device_id)

    def defer_cad_job(self, job_id: UUID) -> None:
        """Schedule a CAD job's run (a no-op when one waits); raises
        ``JobQueueUnavailable`` if it cannot be stored — ``resume_cad_jobs`` defers it
        later."""
        self._defer(Deferred.CAD, job_id)

    def _defer(self, kind: Deferred, record_id: UUID, delay: timedelta = timedelta(0)) -> None:
        """Defer through the table the worker's tasks use too (``deferrals.DEFERRALS``)."""
        self._defer_key(kind, str(record_id), delay)

    def _defer_key(self, kind: Deferred, key: str, delay: timedelta = timedelta(0)) -> None:
        try:
            task, arguments = configured(self._app, kind, key, delay, allow_unknown=True)
            task.defer(**arguments)
        except AlreadyEnqueued:
            return
        except (ProcrastinateException, psycopg.Error) as exc:
            raise JobQueueUnavailable(
                f"cannot defer {DEFERRALS[kind].what} {key}: {type(exc).__name__}"
            ) from exc
