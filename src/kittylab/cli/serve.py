"""Long-running processes: the API server (with in-process workers) and worker-only mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import FrameType

import typer
import uvicorn
from sqlalchemy import func, or_, select

from kittylab import bootstrap
from kittylab.adapters.db.engine import libpq_url
from kittylab.adapters.db.tables import Device
from kittylab.adapters.tls import ServerCertificate
from kittylab.api.app import create_app
from kittylab.cli.console import console_url
from kittylab.cli.simulator_child import supervise_simulator, with_camera_port
from kittylab.config import Settings
from kittylab.devices.telemetry_ingest import TelemetryIngest
from kittylab.domain.networks import is_loopback_host
from kittylab.domain.simulated_lab import SIMULATED
from kittylab.safety.command_signature import public_key_text
from kittylab.worker.run import WorkerState, build_job_app, supervise_worker

log = logging.getLogger(__name__)

# amqtt waits for its client sessions to close; one that never answers must not keep the
# embedded PostgreSQL (stopped after this) running.
_BROKER_STOP_SECONDS = 5
_TASK_STOP_SECONDS = 5


class _StopSignals:
    """SIGTERM and SIGINT for ``kittylab serve``.

    Before the event loop runs (starting PostgreSQL, migrating), a signal raises
    ``SystemExit``, so the ``with`` blocks release the embedded PostgreSQL and the
    data-dir lock. While the loop runs, uvicorn handles signals itself and, once it has
    shut down, raises the signal again; an exception raised from a signal handler then
    would land at an arbitrary point inside the event loop, possibly in the middle of a
    task's step, leaving that task unfinishable and the shutdown hanging. So while the
    loop runs a signal only asks the server to stop, and the loop ends normally."""

    def __init__(self) -> None:
        self.loop_running = False
        self.requested = False
        self.server: uvicorn.Server | None = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.loop_running:
            raise SystemExit(0)
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True


_signals = _StopSignals()


def run_server(settings: Settings, *, host: str, port: int, with_workers: bool) -> None:
    # Refused before anything starts: plain HTTP or MQTT beyond loopback, unless allowed.
    certificate = bootstrap.http_certificate(settings, host)
    bootstrap.broker_address(settings)
    bootstrap.embedded_broker(settings)
    settings = with_camera_port(settings)
    _signals.install()
    with bootstrap.database_url_for(settings, lock=True) as url:
        bootstrap.upgrade_database(url)
        with bootstrap.application(settings, url) as container:
            bootstrap.prewarm_cad(container)
            scheme = "https" if certificate is not None else "http"
            shown = f"[{host}]" if ":" in host else host
            typer.echo(
                f"KittyLab listening on {scheme}://{shown}:{port} (data in {settings.data_dir})"
            )
            # Issue 17: the web console; passkeys need a host name, so not the bare address.
            typer.echo(
                f"console: {console_url(settings, port)}/ (a first passkey: "
                "kittylab users invite NAME)"
            )
            if not is_loopback_host(host):
                networks = ", ".join(str(n) for n in settings.http.trusted_networks)
                typer.echo(f"requests from outside {networks} can only read")
            _signals.loop_running = True
            try:
                asyncio.run(_serve(container, host, port, with_workers, certificate))
            finally:
                _signals.loop_running = False
                log.info("closing the database and the artifact store")


async def _serve(
    container: bootstrap.Container,
    host: str,
    port: int,
    with_workers: bool,
    certificate: ServerCertificate | None,
) -> None:
    config = uvicorn.Config(
        create_app(container),
        host=host,
        port=port,
        ssl_certfile=str(certificate.cert) if certificate is not None else None,
        ssl_keyfile=str(certificate.key) if certificate is not None else None,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        limit_concurrency=container.settings.http.max_concurrent_requests,
        # The client's address decides what it may do (api/networks.py reads
        # X-Forwarded-For from the configured proxies only); uvicorn must not rewrite it.
        proxy_headers=False,
    )
    _size_thread_pool(container.settings.jobs.concurrency)
    server = uvicorn.Server(config)
    _signals.server = server
    # A stop asked for while starting up: uvicorn starts, sees it, and shuts down.
    server.should_exit = _signals.requested
    # The simulator's bus identity acts for the lab's simulated devices, before anyone
    # connects; the list of them waits in the outbox for the bus to connect.
    await asyncio.to_thread(bootstrap.follow_simulated_devices, container)
    broker = bootstrap.embedded_broker(container.settings)
    if broker is not None:
        await broker.start()
    background: list[asyncio.Task[None]] = []
    bus = container.bus
    if bus is not None:
        background.append(asyncio.create_task(bus.run(), name="mqtt-bus"))
        # Only the server stores bus telemetry; workers elsewhere would store it twice.
        ingest = TelemetryIngest(container.database, container.clock)
        ingest.attach(bus)
        background.append(asyncio.create_task(ingest.run(), name="telemetry-ingest"))
        bootstrap.monitor_ingest(container).attach(bus)
    background.append(
        asyncio.create_task(bootstrap.print_tracker(container).run(), name="print-tracker")
    )
    background.append(
        asyncio.create_task(bootstrap.device_poller(container).run(), name="device-poller")
    )
    background.append(
        asyncio.create_task(bootstrap.release_idle_resources(container), name="idle-release")
    )
    background.append(
        asyncio.create_task(bootstrap.print_watcher(container).run(), name="print-watcher")
    )
    sim = container.settings.simulator
    # Lab changes from any process: caches forget, and the simulator hears of new devices.
    background.append(asyncio.create_task(bootstrap.follow_changes(container), name="changes"))
    background.append(
        asyncio.create_task(
            _follow_simulated_devices(container, sim.reload_interval_seconds),
            name="simulated-devices",
        )
    )
    if sim.enabled and bus is not None:
        # The simulated lab is a device: its own process, speaking MQTT only (issue 14).
        key = public_key_text(bootstrap.command_signer(container.settings).public_key)
        simulator_started = container.clock()
        background.append(
            asyncio.create_task(
                supervise_simulator(container.settings, key), name="simulator-process"
            )
        )
        await _await_simulated_lab(container, simulator_started, _SIMULATED_LAB_WAIT_SECONDS)
    # Commands are sent from this loop right after their commit (the job queue is the backstop).
    await bootstrap.start_inline_dispatch(container)
    try:
        if with_workers:
            await _serve_with_workers(container, server)
        else:
            await server.serve()
    finally:
        # Each stage is logged with its duration: a stop that hangs says where.
        started = time.monotonic()
        if container.dispatcher is not None:
            await container.dispatcher.stop(_TASK_STOP_SECONDS)
        await _stop_all(background)
        log.info("background tasks stopped in %.1f s", time.monotonic() - started)
        if broker is not None:
            started = time.monotonic()
            try:
                await asyncio.wait_for(broker.stop(), _BROKER_STOP_SECONDS)
            except TimeoutError:
                log.warning("embedded MQTT broker did not stop in %d s", _BROKER_STOP_SECONDS)
            log.info("embedded MQTT broker stopped in %.1f s", time.monotonic() - started)
        # asyncio.run now joins the thread pool: blocking work still running ends first.
        log.info("waiting for running threads to finish")


_SIMULATED_LAB_WAIT_SECONDS = 20.0


async def _await_simulated_lab(
    container: bootstrap.Container, since: datetime, within: float
) -> None:
    """Wait until every simulated device has been heard from by this run (its state
    stored since ``since``) before commands are taken up and requests answered: the first
    command is then neither refused as offline nor sent, taken up after a restart, before
    the simulator listens (a command published with no subscriber is lost). Bounded: a
    simulator that does not come up is logged, and the server goes on without it."""
    deadline = time.monotonic() + within
    while True:
        waiting = await asyncio.to_thread(_simulated_unheard, container, since)
        if waiting == 0:
            return
        if time.monotonic() > deadline:
            log.warning("%d simulated devices not heard from in %.0f s", waiting, within)
            return
        await asyncio.sleep(0.1)


def _simulated_unheard(container: bootstrap.Container, since: datetime) -> int:
    with container.database.unit_of_work() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Device)
            .where(
                Device.integration == SIMULATED,
                Device.retired_at.is_(None),
                or_(Device.last_seen.is_(None), Device.last_seen < since),
            )
        )
    return int(count or 0)


async def _follow_simulated_devices(container: bootstrap.Container, every: float) -> None:
    """Publish the simulated devices again now and then (``devices.simulated_lab``): a
    broker restarted without its retained messages gets them back; changes to the lab
    are followed at once by ``bootstrap.follow_changes``."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(bootstrap.follow_simulated_devices, container)
        except Exception:
            log.exception("the simulator's bus identity could not follow the lab; retrying")


async def _stop_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the background tasks and wait for them, but not forever: a task that does
    not end within ``_TASK_STOP_SECONDS`` is named with where it is stuck, cancelled
    again, and left behind, so one stuck client cannot keep the server (and its embedded
    PostgreSQL) from stopping."""
    for task in tasks:
        task.cancel()
    _, stuck = await asyncio.wait(tasks, timeout=_TASK_STOP_SECONDS)
    for task in stuck:
        frames = task.get_stack(limit=8)
        where = " <- ".join(
            f"{f.f_code.co_name} ({f.f_code.co_filename}:{f.f_lineno})" for f in frames
        )
        log.warning(
            "background task %s did not stop in %d s; stuck in %s",
            task.get_name(),
            _TASK_STOP_SECONDS,
            where or "?",
        )
        task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("background task %s ended with %r", task.get_name(), task.exception())


async def _serve_with_workers(container: bootstrap.Container, server: uvicorn.Server) -> None:
    job_app = build_job_app(libpq_url(container.database_url))
    context = bootstrap.job_context(container)
    state = WorkerState()
    container.worker_state = state  # /readyz reports it
    async with job_app.open_async():
        worker = asyncio.create_task(
            supervise_worker(
                job_app, context, state, concurrency=container.settings.jobs.concurrency
            )
        )
        try:
            await server.serve()
        finally:
            # Jobs interrupted here stay in the queue and are taken up on the next start.
            started = time.monotonic()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            log.info("job worker stopped in %.1f s", time.monotonic() - started)


def _size_thread_pool(job_concurrency: int) -> None:
    """Jobs run blocking work through ``asyncio.to_thread``; the default
    pool (CPUs + 4 threads) would silently cap job concurrency on a small machine."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=job_concurrency + 8, thread_name_prefix="kittylab")
    )


def run_worker_only(settings: Settings, concurrency: int) -> None:
    with bootstrap.database_url_for(settings, lock=False) as url:
        bootstrap.upgrade_database(url)
        with bootstrap.application(settings, url, role="worker") as container:
            bootstrap.prewarm_cad(container)
            job_app = build_job_app(libpq_url(url))
            context = bootstrap.job_context(container)
            typer.echo(f"KittyLab worker running {concurrency} jobs at a time; Ctrl-C stops it")

            async def _run() -> None:
                _size_thread_pool(concurrency)
                supervisor = asyncio.current_task()
                assert supervisor is not None
                loop = asyncio.get_running_loop()
                # SIGINT/SIGTERM end the supervisor (running jobs finish first); anything
                # else that ends a worker is restarted by it.
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, supervisor.cancel)
                # Commands reach devices over the bus; without one they would all time out.
                bus = asyncio.create_task(container.bus.run()) if container.bus else None
                try:
                    async with job_app.open_async():
                        await supervise_worker(
                            job_app, context, WorkerState(), concurrency=concurrency
                        )
                finally:
                    if bus is not None:
                        bus.cancel()

            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(_run())
