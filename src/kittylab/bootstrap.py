"""The composition root: settings in, a wired application out. The only module that picks
concrete adapters."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from kittylab.adapters.cad.analyzer import MeshAnalyzer
from kittylab.adapters.cad.cadquery_provider import CadQueryProvider
from kittylab.adapters.cad.external_mesh import ExternalMeshProvider
from kittylab.adapters.cad.freecad_provider import FreeCadProvider
from kittylab.adapters.cad.tripo import TripoProvider
from kittylab.adapters.cad.worker import CadWorkerPool, WorkerLimits
from kittylab.adapters.cad.zoo import ZooProvider
from kittylab.adapters.db import migrate
from kittylab.adapters.db.embedded import DataDirLock, EmbeddedPostgres
from kittylab.adapters.db.engine import Database, libpq_url, make_engine
from kittylab.adapters.devices.simulated import build_simulator
from kittylab.adapters.jobs.queue import ProcrastinateQueue
from kittylab.adapters.jobs.tasks import JobContext
from kittylab.adapters.jobs.worker import WorkerState
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.config import Settings
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CADProvider
from kittylab.services.artifacts import ArtifactStore
from kittylab.services.cad import AlertSettings, CadProviderPort, CadService
from kittylab.services.ports import JobQueue, NotificationSender
from kittylab.services.simulation import SimulatedFleet

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    database: Database
    database_url: str
    jobs: JobQueue
    sender: NotificationSender
    cad: CadService
    cad_pool: CadWorkerPool
    artifacts: ArtifactStore
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
    # The folder store until the S3 store is chosen by settings.
    store = FolderArtifactStore(settings.data_dir / "artifacts")
    pool = cad_worker_pool(settings)
    try:
        yield Container(
            settings=settings,
            database=database,
            database_url=url,
            jobs=queue,
            sender=AppriseSender(settings.notify),
            cad=cad_service(settings, database, store, pool, queue),
            cad_pool=pool,
            artifacts=store,
        )
    finally:
        pool.close()
        queue.close()
        database.dispose()


def prewarm_cad(container: Container) -> threading.Thread | None:
    """Start a CAD worker in the background (``cad.prewarm``), so the first request does
    not wait for CadQuery to import. A failure is logged; requests then start one."""
    if not container.settings.cad.prewarm:
        return None

    def warm() -> None:
        try:
            container.cad_pool.warm_up()
        except Exception:
            log.warning("could not start a CAD worker in advance", exc_info=True)

    thread = threading.Thread(target=warm, name="cad-prewarm", daemon=True)
    thread.start()
    return thread


def cad_worker_pool(settings: Settings) -> CadWorkerPool:
    cad = settings.cad
    return CadWorkerPool(
        size=cad.workers,
        limits=WorkerLimits(
            timeout_seconds=cad.build_timeout_seconds,
            cpu_seconds=cad.build_cpu_seconds,
            memory_bytes=cad.worker_memory_mb * 1024 * 1024,
        ),
    )


def cad_service(
    settings: Settings,
    database: Database,
    store: ArtifactStore,
    pool: CadWorkerPool,
    queue: ProcrastinateQueue | None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> CadService:
    """The CAD use cases with their providers, in the order ``auto`` tries them within
    each group (online first, then offline)."""
    cad = settings.cad
    providers: list[CadProviderPort] = [
        ZooProvider(
            cad.zoo_api_token.get_secret_value() if cad.zoo_api_token else None,
            base_url=cad.zoo_base_url,
            request_timeout_seconds=cad.online_request_timeout_seconds,
            deadline_seconds=cad.online_deadline_seconds,
            poll_seconds=cad.online_poll_seconds,
        ),
        TripoProvider(
            cad.tripo_api_key.get_secret_value() if cad.tripo_api_key else None,
            base_url=cad.tripo_base_url,
            deadline_seconds=cad.online_deadline_seconds,
            poll_seconds=cad.online_poll_seconds,
        ),
        CadQueryProvider(pool),
        FreeCadProvider(cad.freecad_command, pool.limits),
        ExternalMeshProvider(
            CADProvider.TRIPOSR,
            cad.triposr_command,
            store,
            timeout_seconds=cad.external_timeout_seconds,
        ),
        ExternalMeshProvider(
            CADProvider.INSTANTMESH,
            cad.instantmesh_command,
            store,
            timeout_seconds=cad.external_timeout_seconds,
        ),
    ]
    return CadService(
        database,
        store,
        providers,
        MeshAnalyzer(settings.cad.bed_mm),
        queue=queue,
        alerts=queue,
        alert_settings=AlertSettings(
            channel=settings.cad.alert_channel,
            recipients=tuple(settings.cad.alert_recipients),
        ),
        clock=clock,
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
        cad=container.cad,
    )
