"""Jobs left ``doing`` by a worker that died (kill -9) are found by their worker's old
heartbeat and run again: real PostgreSQL, real procrastinate worker."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Notification
from kittylab.adapters.jobs import ProcrastinateQueue, Recovery, recover_stalled_jobs
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.config import JobSettings, NotifySettings, Settings
from kittylab.domain.enums import NotificationChannel, NotificationStatus
from kittylab.records import notifications
from kittylab.worker.run import build_job_app, run_worker
from kittylab.worker.tasks import JobContext
from tests.integration.worker_runner import run_worker_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver: its Apprise URL and the JSON bodies it got."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def job_context(database: Database, tmp_path: Path) -> JobContext:
    notify = NotifySettings(webhook_hosts=["127.0.0.1"], send_timeout_seconds=5)
    settings = Settings(
        data_dir=tmp_path,
        notify=notify,
        jobs=JobSettings(poll_interval_seconds=0.2),
        _env_file=None,
    )
    return JobContext(database=database, sender=AppriseSender(notify), settings=settings)


def _worker(database: Database, heartbeat_age_seconds: float) -> int:
    """A row in procrastinate_workers whose last heartbeat is that old."""
    with database.engine.begin() as conn:
        worker_id: int = conn.execute(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - make_interval(secs => :age)) RETURNING id"
            ),
            {"age": heartbeat_age_seconds},
        ).scalar_one()
    return worker_id


def _running_delivery(
    database: Database, database_url: str, notification_id: UUID, worker_id: int
) -> int:
    """A delivery job as a worker leaves it when it is killed mid-job: ``doing``, owned by
    ``worker_id``, as procrastinate's fetch marks it."""
    with ProcrastinateQueue(database_url) as queue:
        queue.defer_notification(notification_id)
    with database.engine.begin() as conn:
        job_id: int = conn.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'doing', worker_id = :worker "
                "WHERE queueing_lock = :lock AND status = 'todo' RETURNING id"
            ),
            {"worker": worker_id, "lock": f"notification:{notification_id}"},
        ).scalar_one()
    return job_id


def _status(database: Database, job_id: int) -> str | None:
    with database.engine.connect() as conn:
        status: str | None = conn.execute(
            text("SELECT status::text FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one_or_none()
    return status


def _recover(database_url: str, seconds_since_heartbeat: float = 30) -> Recovery:
    async def main() -> Recovery:
        app = build_job_app(database_url)
        async with app.open_async():
            return await recover_stalled_jobs(app, seconds_since_heartbeat=seconds_since_heartbeat)

    return asyncio.run(main())


def _drain(database_url: str, context: JobContext) -> None:
    async def main() -> None:
        app = build_job_app(database_url)
        async with app.open_async():
            await run_worker(app, context, concurrency=1, wait=False)

    asyncio.run(main())


def _enqueue(database: Database, recipient: str) -> UUID:
    with database.unit_of_work() as session:
        return notifications.enqueue(
            session,
            channel=NotificationChannel.WEBHOOK,
            recipient=recipient,
            title="Print finished",
            body="Benchy is done.",
        ).id


def test_job_of_a_dead_worker_is_requeued_and_then_run(
    database: Database,
    database_url: str,
    job_context: JobContext,
    received: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = received
    notification_id = _enqueue(database, url)
    stalled = _running_delivery(database, database_url, notification_id, _worker(database, 3600))
    # A job whose worker is alive (fresh heartbeat) must be left running.
    running = _running_delivery(database, database_url, uuid4(), _worker(database, 0))

    recovery = _recover(database_url)

    assert recovery.retried == [stalled]
    assert _status(database, stalled) == "todo"
    assert _status(database, running) == "doing"

    _drain(database_url, job_context)

    assert _status(database, stalled) is None  # succeeded, and successful jobs are deleted
    with database.unit_of_work() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        assert row.status is NotificationStatus.SENT
    assert [b["title"] for b in bodies] == ["Print finished"]
    assert _status(database, running) == "doing"


def test_stalled_job_whose_work_is_already_queued_again_is_marked_failed(
    database: Database, database_url: str
) -> None:
    notification_id = uuid4()
    stalled = _running_delivery(database, database_url, notification_id, _worker(database, 3600))
    with ProcrastinateQueue(database_url) as queue:  # e.g. the sweep deferred a new delivery
        queue.defer_notification(notification_id)

    recovery = _recover(database_url)

    assert recovery == Recovery(retried=[], superseded=[stalled])
    assert _status(database, stalled) == "failed"
    with database.engine.connect() as conn:
        waiting = conn.execute(
            text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
        ).scalar_one()
    assert waiting == 1


def test_worker_recovers_a_stalled_job_by_itself_through_the_periodic_task(
    database: Database, database_url: str, job_context: JobContext
) -> None:
    # The notification row does not exist, so only a re-run of this very job (not the
    # notification sweep) can make it finish.
    stalled = _running_delivery(database, database_url, uuid4(), _worker(database, 3600))

    run_worker_until(database_url, job_context, lambda: _status(database, stalled) is None)


def test_nothing_is_recovered_while_every_worker_sends_heartbeats(
    database: Database, database_url: str
) -> None:
    running = _running_delivery(database, database_url, uuid4(), _worker(database, 5))

    assert _recover(database_url, seconds_since_heartbeat=30) == Recovery()
    assert _status(database, running) == "doing"
