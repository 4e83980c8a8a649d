"""The composition root: settings in, a wired application out. The only module that picks
concrete adapters."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from kittylab.adapters.db import migrate
from kittylab.adapters.db.embedded import DataDirLock, EmbeddedPostgres
from kittylab.adapters.db.engine import Database, libpq_url, make_engine
from kittylab.adapters.devices.simulated import build_simulator
from kittylab.adapters.jobs.queue import ProcrastinateQueue
from kittylab.adapters.jobs.tasks import JobContext
from kittylab.adapters.jobs.worker import WorkerState
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.config import Settings
from kittylab.domain.clock import utcnow
from kittylab.services.ports import JobQueue, NotificationSender
from kittylab.services.query import QueryService, RecordingSubmitter
from kittylab.services.simulation import SimulatedFleet
from kittylab.understanding.pipeline import Understander

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    database: Database
    database_url: str
    jobs: JobQueue
    sender: NotificationSender
    query: QueryService
    clock: Callable[[], datetime] = utcnow
    worker_state: WorkerState | None = None
    """Set when this process supervises a job worker (``kittylab serve``)."""


@contextmanager
def database_url_for(settings: Settings, *, lock: bool = True) -> Iterator[str]:
    """Yield the PostgreSQL URL to use: the configured one, or an embedded server started in
    the data directory (stopped again on exit). ``lock`` claims the data directory so a
    second server on it refuses to start."""
    dir_lock = DataDirLock(settings.data_dir)
    if lock:
        dir_lock.acquire()
    embedded: EmbeddedPostgres | None = None
    try:
        if settings.database_url is not None:
            yield settings.database_url.get_secret_value()
        else:
            embedded = EmbeddedPostgres(settings.data_dir)
            log.info("starting embedded PostgreSQL", extra={"pgdata": str(embedded.pgdata)})
            yield embedded.start()
    finally:
        if embedded is not None:
            embedded.stop()
        dir_lock.release()


def upgrade_database(url: str) -> None:
    engine = make_engine(url, pool_size=1, timeouts=False)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@contextmanager
def application(settings: Settings, url: str) -> Iterator[Container]:
    """Build the container on an already-migrated database and release it on exit."""
    database = Database(make_engine(url))
    queue = ProcrastinateQueue(libpq_url(url))
    queue.open()
    try:
        yield Container(
            settings=settings,
            database=database,
            database_url=url,
            jobs=queue,
            sender=AppriseSender(settings.notify),
            query=query_service(settings, database),
        )
    finally:
        queue.close()
        database.dispose()


def query_service(settings: Settings, database: Database) -> QueryService:
    """The conversation service with the tiers the settings choose. Models load lazily, on
    the first request that needs them. No context publisher yet: the MQTT bus wires one."""
    from kittylab.adapters.llm.factory import frontier_answerer, local_model, mcp_answerers

    q = settings.query
    return QueryService(
        database=database,
        settings=q,
        understander=Understander(local_model(settings), q.grammar_threshold),
        submitter=RecordingSubmitter(utcnow),
        clock=utcnow,
        mcp=mcp_answerers(q.mcp_servers),
        frontier=frontier_answerer(q.frontier),
        publisher=None,
    )


def simulated_fleet(container: Container) -> SimulatedFleet:
    return SimulatedFleet(container.database, build_simulator, container.clock)


def job_context(container: Container) -> JobContext:
    """What background jobs work with: the same database, sender, settings and clock."""
    return JobContext(
        database=container.database,
        sender=container.sender,
        settings=container.settings,
        clock=container.clock,
    )
