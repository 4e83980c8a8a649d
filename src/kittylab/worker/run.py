"""Run the procrastinate worker inside an existing event loop (``kittylab serve``, next to
uvicorn) or on its own (``kittylab worker``): its app with the KittyLab tasks
(``build_job_app``), the worker (``run_worker``) and its supervisor."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import procrastinate
from prometheus_client import Gauge

from kittylab.adapters.jobs.deferrals import NAMESPACE
from kittylab.adapters.jobs.queue import pool_args
from kittylab.worker.tasks import CONTEXT_KEY, JobContext, job_blueprint

__all__ = ["WorkerState", "build_job_app", "run_worker", "supervise_worker"]

logger = logging.getLogger(__name__)


def build_job_app(database_url: str, *, max_connections: int = 10) -> procrastinate.App:
    """The async app a worker runs (see ``run_worker``), with the KittyLab tasks.

    A worker holds one connection for LISTEN and one per running job's bookkeeping, so
    ``max_connections`` should exceed the worker's concurrency by a few. Nothing connects
    until the app is opened.
    """
    connector = procrastinate.PsycopgConnector(
        **pool_args(database_url, max_size=max_connections, application_name="kittylab-worker")
    )
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(job_blueprint(), namespace=NAMESPACE)
    return app


async def run_worker(
    app: procrastinate.App,
    context: JobContext,
    *,
    concurrency: int,
    wait: bool = True,
    install_signal_handlers: bool = False,
) -> None:
    """Work jobs until stopped (``wait=True``) or until the queue is drained (``wait=False``).

    ``app`` comes from ``build_job_app`` and must be open for the whole call
    (``async with app.open_async(): await run_worker(...)``). To stop, cancel the task
    awaiting this coroutine, or send SIGINT/SIGTERM when ``install_signal_handlers`` is set:
    running jobs finish first, and since every outbound call in a job has its own timeout,
    that wait is bounded.

    The worker records a heartbeat every ``jobs.heartbeat_interval_seconds``; one silent for
    ``jobs.stalled_worker_timeout_seconds`` counts as dead and its jobs are retried (see
    ``kittylab.adapters.jobs.recovery``).
    """
    jobs = context.settings.jobs
    name = f"kittylab@{socket.gethostname()}:{os.getpid()}"
    logger.info("starting job worker %s with concurrency %d", name, concurrency)
    await app.run_worker_async(
        name=name,
        concurrency=concurrency,
        wait=wait,
        install_signal_handlers=install_signal_handlers,
        additional_context={CONTEXT_KEY: context},
        fetch_job_polling_interval=jobs.poll_interval_seconds,
        update_heartbeat_interval=jobs.heartbeat_interval_seconds,
        stalled_worker_timeout=jobs.stalled_worker_timeout_seconds,
        # A finished job holds nothing its notification row lacks; failed ones are kept
        # for inspection.
        delete_jobs="successful",
        # On stop, running jobs get this long to finish; the rest are retried later by
        # the stalled-job recovery (their notifications are idempotent).
        shutdown_graceful_timeout=jobs.shutdown_grace_seconds,
    )


WORKER_UP = Gauge("kittylab_worker_up", "1 while this process's job worker is running.")


@dataclass
class WorkerState:
    """Whether the supervised worker is running, for ``/readyz`` and metrics."""

    running: bool = False
    restarts: int = 0
    last_error: str | None = None


async def supervise_worker(
    app: procrastinate.App,
    context: JobContext,
    state: WorkerState,
    *,
    concurrency: int,
    max_backoff_seconds: float = 30.0,
    runner: Callable[..., Awaitable[None]] | None = None,
) -> None:
    """Keep a worker running until cancelled. procrastinate ends its worker when the
    database drops its connection (a restart, a failover); without this, background work
    would stop silently. Restarts back off exponentially, and the backoff resets after a
    worker has run for a minute."""
    run = runner or run_worker
    backoff = 1.0
    while True:
        started = time.monotonic()
        state.running = True
        WORKER_UP.set(1)
        try:
            await run(app, context, concurrency=concurrency)
            state.last_error = "worker stopped"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # We were asked to stop and the worker's own shutdown failed (the database
                # is gone): stopping wins over restarting.
                raise asyncio.CancelledError from exc
            state.last_error = type(exc).__name__
            logger.exception("job worker failed")
        finally:
            state.running = False
            WORKER_UP.set(0)
        if time.monotonic() - started > 60:
            backoff = 1.0
        state.restarts += 1
        logger.error("job worker stopped (%s); restarting in %.0f s", state.last_error, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_seconds)
