"""A worker whose database connection drops (a PostgreSQL restart, a failover) is started
again, and /readyz says so while it is down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kittylab.adapters.db.engine import Database, libpq_url
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.config import Settings
from kittylab.worker.run import WorkerState, build_job_app, supervise_worker
from kittylab.worker.tasks import JobContext


async def _wait_until(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def _set_connections_allowed(database_url: str, allowed: bool) -> None:
    # A database cannot close its own doors: do it from the server's "postgres" database.
    url = make_url(database_url)
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(
            f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS {str(allowed).lower()}'  # type: ignore[arg-type]
        )


def _cut_the_worker_off(database: Database, database_url: str) -> int:
    """What a PostgreSQL restart looks like to a worker: its connections die and, for a
    moment, new ones are refused."""
    _set_connections_allowed(database_url, False)
    with database.engine.begin() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'kittylab-worker' AND pid <> pg_backend_pid()"
                )
            ).all()
        )


def test_a_worker_that_loses_the_database_is_restarted(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    context = JobContext(
        database=database, sender=AppriseSender(settings.notify), settings=settings
    )
    state = WorkerState()

    async def scenario() -> None:
        app = build_job_app(database_url)
        async with app.open_async():
            task = asyncio.create_task(
                supervise_worker(app, context, state, concurrency=1, max_backoff_seconds=0.2)
            )
            try:
                assert await _wait_until(lambda: state.running, 10)
                await asyncio.sleep(0.5)  # let the worker LISTEN
                try:
                    assert await asyncio.to_thread(_cut_the_worker_off, database, database_url) > 0
                    assert await _wait_until(lambda: state.restarts >= 1, 20)
                finally:
                    await asyncio.to_thread(_set_connections_allowed, database_url, True)
                assert await _wait_until(lambda: state.running, 10)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert state.restarts >= 1
    assert state.running is False  # cancelled at the end
