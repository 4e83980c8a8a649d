"""The composition root: settings in, a wired application out. The only module that picks
concrete adapters."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from kittylab.adapters.bus.broker import EmbeddedBroker
from kittylab.adapters.bus.mqtt import MqttBus
from kittylab.adapters.cad.analyzer import MeshAnalyzer
from kittylab.adapters.cad.cadquery_provider import CadQueryProvider
from kittylab.adapters.cad.external_mesh import ExternalMeshProvider
from kittylab.adapters.cad.freecad_provider import FreeCadProvider
from kittylab.adapters.cad.tripo import TripoProvider
from kittylab.adapters.cad.worker import CadWorkerPool, WorkerLimits
from kittylab.adapters.cad.zoo import ZooProvider
from kittylab.adapters.db import change_signal, migrate
from kittylab.adapters.db.embedded import DataDirLock, EmbeddedPostgres
from kittylab.adapters.db.engine import Database, libpq_url, make_engine
from kittylab.adapters.detectors.obico import ObicoDetector
from kittylab.adapters.detectors.snapshots import HttpSnapshotSource
from kittylab.adapters.devices.bambu import BambuDriver
from kittylab.adapters.devices.homeassistant import HomeAssistantDriver
from kittylab.adapters.devices.moonraker import MoonrakerDriver
from kittylab.adapters.devices.mqtt import MqttDeviceDriver
from kittylab.adapters.devices.octoprint import OctoPrintDriver
from kittylab.adapters.jobs.queue import ProcrastinateQueue
from kittylab.adapters.notify.apprise_sender import AppriseSender
from kittylab.adapters.slicer.gcode_summary import SummaryMissing, read_summary
from kittylab.adapters.slicer.prusaslicer import PROFILE_DIR, PrusaSlicer
from kittylab.adapters.slicer.threemf import ArchiveLimits
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.adapters.tls import ServerCertificate, lab_tls, listener_certificate
from kittylab.bootstrap_bus import broker_address as broker_address
from kittylab.bootstrap_bus import bus_identities as bus_identities
from kittylab.bootstrap_bus import bus_identities_file as bus_identities_file
from kittylab.bootstrap_bus import command_key_file as command_key_file
from kittylab.bootstrap_bus import command_signer as command_signer
from kittylab.bootstrap_bus import command_verifier as command_verifier
from kittylab.bootstrap_bus import embedded_broker_certificate as embedded_broker_certificate
from kittylab.bootstrap_bus import message_bus as message_bus
from kittylab.cad.ports import CadProviderPort
from kittylab.cad.runs import AlertSettings, CadService
from kittylab.cad.spending import Budget
from kittylab.config import Settings
from kittylab.conversation.actions import (
    BusContextPublisher,
    ConversationCad,
    DispatchingStopper,
    DispatchingSubmitter,
)
from kittylab.conversation.answers.reading import ReportIntervals
from kittylab.conversation.answers.service import AnswerPolicy, StateAnswers
from kittylab.conversation.follow_up import ReplyCloser
from kittylab.conversation.memory import TurnMemory
from kittylab.conversation.ports import CommandSubmitter
from kittylab.conversation.query import QueryService
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.conversation.voice import VoiceService
from kittylab.devices import simulated_lab
from kittylab.devices.inline_dispatch import InlineDispatcher
from kittylab.devices.poller import DevicePoller
from kittylab.devices.ports import DeviceDriver
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import CADProvider
from kittylab.domain.errors import ValidationFailed
from kittylab.fabrication.jobs import SliceEstimate
from kittylab.fabrication.ports import Slicer
from kittylab.fabrication.tracker import PrintTracker
from kittylab.monitoring.camera_pictures import CameraPictures
from kittylab.monitoring.ingest import MonitorIngest
from kittylab.monitoring.watcher import PrintWatcher
from kittylab.people.passkeys import RelyingParty
from kittylab.people.principal_cache import PrincipalCache
from kittylab.ports import JobQueue
from kittylab.records.ports import ArtifactStore, NotificationSender
from kittylab.safety.workflow import SafetyContext
from kittylab.worker.run import WorkerState
from kittylab.worker.tasks import JobContext

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    database: Database
    database_url: str
    jobs: JobQueue
    sender: NotificationSender
    query: QueryService
    cad: CadService
    cad_pool: CadWorkerPool
    artifacts: ArtifactStore
    """Where uploads, G-code, CAD outputs and evidence are kept."""
    clock: Callable[[], datetime] = utcnow
    worker_state: WorkerState | None = None
    """Set when this process supervises a job worker (``kittylab serve``)."""
    bus: MqttBus | None = None
    """The process's MQTT client; connected only while something runs ``bus.run()``."""
    drivers: dict[str, DeviceDriver] = field(default_factory=dict)
    """Device drivers by integration name."""
    voice: VoiceService | None = None
    """Spoken turns (``POST /api/voice/turn``); its speech model loads on first use."""
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    """Bearer token → caller, remembered briefly while changes to people are heard."""
    dispatcher: InlineDispatcher | None = None
    """``jobs`` itself: sends device commands in process once ``start_inline_dispatch``
    attached it to the serving loop (before that, the durable queue does)."""


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
def application(settings: Settings, url: str, *, role: str = "server") -> Iterator[Container]:
    """Build the container on an already-migrated database and release it on exit.

    The MQTT bus is built but not connected: the long-running process (``serve``,
    ``worker``) runs ``container.bus.run()``; short CLI commands never need it."""
    database = Database(make_engine(url))
    queue = ProcrastinateQueue(libpq_url(url))
    queue.open()
    bus = message_bus(settings, role)
    store = artifact_store(settings)
    pool = cad_worker_pool(settings)
    cad = cad_service(settings, database, store, pool, queue)
    jobs = InlineDispatcher(queue)
    query = query_service(settings, database, jobs, bus, cad, store)
    try:
        yield Container(
            settings=settings,
            database=database,
            database_url=url,
            jobs=jobs,
            dispatcher=jobs,
            sender=AppriseSender(settings.notify),
            bus=bus,
            drivers=device_drivers(bus, settings),
            query=query,
            cad=cad,
            cad_pool=pool,
            artifacts=store,
            voice=voice_service(settings, database, query, store),
        )
    finally:
        pool.close()
        queue.close()
        database.dispose()


def http_certificate(settings: Settings, host: str) -> ServerCertificate | None:
    """The certificate ``kittylab serve`` serves HTTPS with on ``host``: the configured one,
    or beyond loopback the lab's; ``None`` serves plain HTTP (on loopback, or allowed).
    ``TlsRequired`` beyond loopback with neither: tokens would cross the LAN in the clear."""
    http = settings.http
    given = (
        ServerCertificate(http.tls_cert, http.tls_key)
        if http.tls_cert is not None and http.tls_key is not None
        else None
    )
    return listener_certificate(
        host,
        given=given,
        lab=lab_tls(settings.data_dir),
        allow_plain=http.allow_plain_http,
        refusal=f"refusing to serve plain HTTP on {host}, beyond loopback: API tokens would "
        "cross the network in the clear. Run `kittylab tls init` (a lab CA and a certificate "
        "for this machine; serve picks it up), or give a certificate with "
        "KITTYLAB_HTTP__TLS_CERT and KITTYLAB_HTTP__TLS_KEY; behind a TLS reverse proxy, "
        "pass --insecure-http (KITTYLAB_HTTP__ALLOW_PLAIN_HTTP=true)",
    )


def embedded_broker(settings: Settings) -> EmbeddedBroker | None:
    """The broker ``kittylab serve`` must run itself: none when a URL is configured. It
    admits only the identities of ``bus_identities_file``."""
    if settings.mqtt.url is not None:
        return None
    return EmbeddedBroker(
        settings.mqtt.embedded_host,
        settings.mqtt.embedded_port,
        identities_file=bus_identities_file(settings),
        certificate=embedded_broker_certificate(settings),
    )


def follow_simulated_devices(container: Container) -> None:
    """Let the simulator's bus identity act for exactly the lab's active simulated devices,
    then publish them (retained) for the simulator process (``devices.simulated_lab``).
    Run by ``kittylab serve`` at start, as the lab changes and every
    ``simulator.reload_interval_seconds``."""
    with container.database.unit_of_work() as session:
        devices = simulated_lab.read(session)
    identities = bus_identities(container.settings)
    if identities.ensure_own(d.external_id for d in devices):
        identities.save()
    if container.bus is not None:
        simulated_lab.publish(container.bus, devices)


async def start_inline_dispatch(container: Container) -> None:
    """From now on, device commands accepted by this process are sent from its running
    loop right after their commit (``devices.inline_dispatch``); those left unfinished by
    an earlier run are taken up at once."""
    dispatcher = container.dispatcher
    if dispatcher is None:
        return
    started = container.clock()
    dispatcher.start(
        asyncio.get_running_loop(),
        database=container.database,
        drivers=container.drivers,
        settings=container.settings.commands,
        notify=container.settings.notify,
        clock=container.clock,
    )
    try:
        await dispatcher.recover(started)
    except Exception:  # the minutely reconcile_commands takes them up instead
        log.warning("unfinished device commands could not be read at start", exc_info=True)


async def follow_changes(container: Container) -> None:
    """Hear every process's changes to the lab and its people (``change_signal``): caches
    keyed on them forget at once, and when the lab changes the simulator's bus identity
    follows it and the new list of simulated devices is published, so a newly applied
    lab's simulated devices are online within a second. Runs until cancelled
    (``kittylab serve``)."""

    async def lab() -> None:
        await asyncio.to_thread(follow_simulated_devices, container)

    await change_signal.listen(libpq_url(container.database_url), {change_signal.LAB: lab})


@runtime_checkable
class ReleasesWhenIdle(Protocol):
    def release_idle(self, idle_seconds: float) -> object: ...


IDLE_CHECK_SECONDS = 30.0


async def release_idle_resources(container: Container) -> None:
    """Stop what loads on first use once nobody has used it for a while: the CadQuery
    workers (``cad.worker_idle_seconds``) and the embedded local model
    (``query.model.idle_seconds``). Runs until cancelled (``kittylab serve``)."""
    settings = container.settings
    held: list[tuple[ReleasesWhenIdle, float]] = [
        (container.cad_pool, settings.cad.worker_idle_seconds)
    ]
    model = container.query.understander.model
    if isinstance(model, ReleasesWhenIdle):
        held.append((model, settings.query.model.idle_seconds))
    every = min(IDLE_CHECK_SECONDS, *(idle / 4 for _, idle in held))
    while True:
        await asyncio.sleep(every)
        for resource, idle in held:
            try:
                await asyncio.to_thread(resource.release_idle, idle)
            except Exception:  # the next round tries again
                log.warning("could not release an idle %s", type(resource).__name__, exc_info=True)


def device_drivers(bus: MqttBus, settings: Settings) -> dict[str, DeviceDriver]:
    """One driver per integration. The simulated lab speaks the generic MQTT device
    protocol (its simulators are the devices' MQTT side), so both share one driver,
    which signs every command with the lab's key."""
    mqtt = MqttDeviceDriver(bus, command_signer(settings))
    return {
        "simulated": mqtt,
        "mqtt": mqtt,
        "bambu": BambuDriver(),
        "octoprint": OctoPrintDriver(),
        "moonraker": MoonrakerDriver(),
        "homeassistant": HomeAssistantDriver(),
    }


def query_service(
    settings: Settings,
    database: Database,
    jobs: JobQueue,
    bus: MqttBus | None,
    cad: CadService | None = None,
    artifacts: ArtifactStore | None = None,
) -> QueryService:
    """The conversation service with the tiers the settings choose. Models load lazily, on
    the first request that needs them. Device requests take the command path; each turn's
    context is published on the bus."""
    from kittylab.adapters.llm.factory import (
        frontier_answerer,
        local_model,
        mcp_answerers,
        semantic_stage,
    )

    q = settings.query
    submitter = DispatchingSubmitter(
        jobs,
        utcnow,
        safety_context(settings),
        bus,
        artifacts=artifacts,
        scenes=settings.fabrication.scenes,
    )
    return QueryService(
        database=database,
        settings=q,
        understander=Understander(
            local_model(settings), q.grammar_threshold, semantic_stage(settings)
        ),
        submitter=submitter,
        clock=utcnow,
        mcp=mcp_answerers(q.mcp_servers),
        frontier=frontier_answerer(q.frontier),
        publisher=BusContextPublisher(bus) if bus is not None else None,
        cad=ConversationCad(cad) if cad is not None else None,
        stopper=DispatchingStopper(jobs, utcnow, bus),
        # Issue 16: every turn is remembered, and a command's reply says how it went.
        hooks=TurnMemory(ReplyCloser(database, settings.conversations.reply_wait_seconds), utcnow),
        answers=state_answers(settings, database, submitter, artifacts),
    )


def state_answers(
    settings: Settings,
    database: Database,
    submitter: CommandSubmitter,
    artifacts: ArtifactStore | None = None,
) -> StateAnswers:
    """Answers from the lab's own state (issue 16): stale readings are refreshed through
    the same command path as the turn's device requests; a camera asked about takes a
    picture, kept in ``artifacts``."""
    a = settings.query.answers
    monitoring = settings.monitoring
    pictures = (
        CameraPictures(
            database,
            artifacts,
            HttpSnapshotSource(
                timeout=monitoring.snapshot_timeout_seconds,
                max_bytes=monitoring.snapshot_max_bytes,
            ),
            utcnow,
            simulated_cameras=settings.simulator.camera_base_url,
        )
        if artifacts is not None
        else None
    )
    return StateAnswers(
        pictures=pictures,
        database=database,
        submitter=submitter,
        clock=utcnow,
        policy=AnswerPolicy(
            fresh_read_wait_seconds=a.fresh_read_wait_seconds,
            stale_grace_seconds=a.stale_grace_seconds,
            intervals=ReportIntervals(
                simulated=settings.simulator.report_interval_seconds,
                polled=settings.devices.poll_interval_seconds,
                other=a.default_report_interval_seconds,
            ),
            presence_ttl=timedelta(seconds=settings.presence.ttl_seconds),
        ),
    )


def voice_service(
    settings: Settings, database: Database, query: QueryService, store: ArtifactStore
) -> VoiceService:
    """Spoken turns through ``query``: PyAV decodes, faster-whisper (Whisper base, assembled
    from its packages on first use) transcribes, espeak-ng speaks the reply. Nothing loads
    until the first spoken request."""
    from kittylab.adapters.speech.audio import PyAvDecoder
    from kittylab.adapters.speech.espeak import EspeakNg
    from kittylab.adapters.speech.whisper import WhisperSpeechToText, default_model_dir

    v = settings.voice
    stt = None
    if v.stt.backend == "faster_whisper":
        stt = WhisperSpeechToText(
            v.stt.model_dir or default_model_dir(),
            threads=v.stt.threads,
            compute_type=v.stt.compute_type,
            beam_size=v.stt.beam_size,
            alternatives=v.stt.alternatives,
            window_seconds=v.stt.window_seconds,
            idle_release_seconds=v.stt.idle_release_seconds,
        )
    tts = None
    if v.tts.backend == "espeak_ng":
        tts = EspeakNg(
            program=v.tts.program,
            voice=v.tts.voice,
            words_per_minute=v.tts.words_per_minute,
            timeout_seconds=v.tts.timeout_seconds,
        )
    return VoiceService(
        query=query,
        database=database,
        settings=v,
        decoder=PyAvDecoder(),
        stt=stt,
        tts=tts,
        store=store,
        clock=utcnow,
    )


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


def safety_context(settings: Settings) -> SafetyContext:
    """What the safety workflow needs from the settings."""
    return SafetyContext(
        event_ttl=timedelta(seconds=settings.safety.event_ttl_seconds),
        presence_ttl=timedelta(seconds=settings.presence.ttl_seconds),
        notify=settings.notify,
        relying_party=RelyingParty(
            settings.console.rp_id, settings.console.rp_name, tuple(settings.console.origins)
        ),
    )


def cad_worker_pool(settings: Settings) -> CadWorkerPool:
    cad = settings.cad
    return CadWorkerPool(
        size=cad.workers,
        limits=WorkerLimits(
            timeout_seconds=cad.build_timeout_seconds,
            cpu_seconds=cad.build_cpu_seconds,
            memory_bytes=cad.worker_memory_mb * 1024 * 1024,
            slot_wait_seconds=cad.worker_wait_seconds,
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
            memory_bytes=cad.external_memory_mb * 1024 * 1024,
        ),
        ExternalMeshProvider(
            CADProvider.INSTANTMESH,
            cad.instantmesh_command,
            store,
            timeout_seconds=cad.external_timeout_seconds,
            memory_bytes=cad.external_memory_mb * 1024 * 1024,
        ),
    ]
    return CadService(
        database,
        store,
        providers,
        MeshAnalyzer(settings.cad.bed_mm, step_checker=pool),
        queue=queue,
        alerts=queue,
        alert_settings=AlertSettings(
            channel=settings.cad.alert_channel,
            recipients=tuple(settings.cad.alert_recipients),
        ),
        clock=clock,
        recover_after=timedelta(seconds=settings.cad.recover_after_seconds),
        build_volumes=slicer(settings),
        budget=Budget(
            prices=dict(settings.cad.online_prices_usd), daily_usd=settings.query.daily_budget_usd
        ),
    )


def job_context(container: Container) -> JobContext:
    """What background jobs work with: the same database, sender, settings and clock."""
    return JobContext(
        database=container.database,
        sender=container.sender,
        settings=container.settings,
        clock=container.clock,
        drivers=container.drivers,
        artifacts=container.artifacts,
        slicer=slicer(container.settings),
        gcode_reader=gcode_estimates,
        cad=container.cad,
        snapshots=HttpSnapshotSource(
            timeout=container.settings.monitoring.snapshot_timeout_seconds,
            max_bytes=container.settings.monitoring.snapshot_max_bytes,
        ),
    )


def gcode_estimates(path: Path) -> SliceEstimate | None:
    """The estimates PrusaSlicer wrote into a G-code file, if it was PrusaSlicer's."""
    try:
        summary = read_summary(path)
    except (SummaryMissing, OSError):
        return None
    return SliceEstimate(
        summary.estimated_seconds,
        summary.filament_mm,
        summary.filament_g,
        summary.filament_type,
    )


def print_tracker(container: Container) -> PrintTracker:
    """The follower of active print jobs; run by ``kittylab serve`` only."""
    settings = container.settings
    return PrintTracker(
        container.database,
        container.drivers,
        container.jobs,
        container.clock,
        settings.fabrication,
        settings.notify,
        bus=container.bus,
    )


def device_poller(container: Container) -> DevicePoller:
    """The reader of devices that do not report themselves; run by ``kittylab serve``."""
    return DevicePoller(
        container.database,
        container.drivers,
        container.clock,
        interval_seconds=container.settings.devices.poll_interval_seconds,
    )


def artifact_store(settings: Settings) -> ArtifactStore:
    """The configured artifact store: the folder (``<data_dir>/artifacts`` or a ``file://``
    URL) or an S3 bucket (``s3://bucket/prefix``). Builds clients only; connects on first use
    (which also creates a missing bucket). A folder that is, holds or lies inside the
    embedded PostgreSQL's directory is refused (``ValidationFailed`` on ``storage.url``)."""
    storage = settings.storage
    if storage.kind == "s3":
        # Imported here so that folder-only processes never load boto3.
        from kittylab.adapters.storage.s3 import S3ArtifactStore

        return S3ArtifactStore.from_settings(storage)
    folder = storage.folder(settings.data_dir)
    check_store_folder(folder, settings.data_dir)
    return FolderArtifactStore(folder, min_free_bytes=storage.min_free_bytes)


def check_store_folder(folder: Path, data_dir: Path) -> None:
    """Refuse a store folder overlapping the embedded PostgreSQL's files or the data dir's
    own: the store lists and deletes what is under its folder (retention removes old
    uploads), and must never reach a database file or the data-dir lock."""
    store = folder.resolve()
    home = data_dir.resolve()
    pgdata = EmbeddedPostgres(data_dir).pgdata.resolve()
    if store.is_relative_to(pgdata) or home.is_relative_to(store):
        raise ValidationFailed(
            "storage.url",
            f"the artifact folder {folder} must not be the data dir, hold it, or lie inside "
            f"the embedded PostgreSQL's directory {pgdata}: give it a folder of its own "
            "(file:///srv/kittylab-artifacts)",
        )


def print_watcher(container: Container) -> PrintWatcher:
    """The watcher of printing jobs (telemetry rules, and the camera detector when one is
    configured); run by ``kittylab serve`` only."""
    monitoring = container.settings.monitoring
    detector = None
    if monitoring.detector_url:
        token = monitoring.detector_token
        detector = ObicoDetector(
            monitoring.detector_url,
            timeout=monitoring.detector_timeout_seconds,
            auth_token=token.get_secret_value() if token else None,
        )
    snapshots = HttpSnapshotSource(
        timeout=monitoring.snapshot_timeout_seconds, max_bytes=monitoring.snapshot_max_bytes
    )
    return PrintWatcher(
        container.database,
        container.drivers,
        container.artifacts,
        container.jobs,
        container.clock,
        monitoring,
        container.settings.notify,
        detector=detector,
        snapshots=snapshots,
        simulated_cameras=container.settings.simulator.camera_base_url,
    )


def slicer(settings: Settings) -> Slicer:
    """PrusaSlicer's command line with the configured (or the shipped) profiles. Runs
    nothing until a slice is asked for."""
    slicing = settings.slicer
    return PrusaSlicer(
        slicing.binary,
        profile_dir=slicing.profile_dir or PROFILE_DIR,
        timeout_seconds=slicing.timeout_seconds,
        memory_bytes=slicing.memory_mb * 1024**2,
        cpu_seconds=slicing.cpu_seconds,
        max_gcode_bytes=slicing.max_gcode_mb * 1024**2,
        archive_limits=ArchiveLimits(
            max_entries=slicing.max_archive_entries,
            max_total_bytes=slicing.max_archive_mb * 1024**2,
            max_entry_bytes=slicing.max_archive_entry_mb * 1024**2,
            max_ratio=slicing.max_compression_ratio,
        ),
    )


def monitor_ingest(container: Container) -> MonitorIngest:
    """Monitor events from detectors on the bus; run by ``kittylab serve`` only."""
    monitoring = container.settings.monitoring
    return MonitorIngest(
        container.database,
        container.artifacts,
        container.jobs,
        container.clock,
        container.settings.notify,
        HttpSnapshotSource(
            timeout=monitoring.snapshot_timeout_seconds, max_bytes=monitoring.snapshot_max_bytes
        ),
        simulated_cameras=container.settings.simulator.camera_base_url,
    )
