"""The background tasks, as a procrastinate blueprint.

The worker is an entrypoint, as the API's routers are: its tasks call the use cases of
every capability, so they live here and not in ``adapters/jobs`` (which defers jobs by
name, through the one table of deferred tasks, ``adapters.jobs.deferrals``, and imports no
use case). Every task's name is pinned (``name=``, under ``NAMESPACE``): it is stored with
each queued job, so it must not follow this module's path.

Tasks are thin: they take the application's objects from the worker's additional
context (``JobContext`` under ``CONTEXT_KEY``), run the synchronous service code in a
thread, and schedule follow-up jobs. Retries are the services' business (the policy and
the attempt count live on the notification row), so procrastinate's own retry is off.

Periodic tasks (schedules in ``PERIODIC``), each with a queueing lock so a cluster
that was down does not pile up runs to catch up on:

- ``sweep_notifications``, every minute: defer delivery of due notifications no job covers;
- ``recover_stalled_jobs``, every minute: retry the jobs of workers that died;
- ``mark_devices_offline``, every minute: devices silent too long go ``offline``;
- ``cleanup_sessions``, every 5 minutes: remove idle conversation sessions;
- ``purge_telemetry``, hourly: delete telemetry past its retention;
- ``purge_conversation_messages``, hourly: delete conversation messages past
  ``conversations.message_retention_days`` (issue 16);
- ``reconcile_commands``, every minute: dispatch (or expire) device commands whose
  dispatch job was lost;
- ``advance_print_queues``, every minute: give every printer with queued jobs a chance
  to start one (after a refusal, a lost job, a printer back online);
- ``resume_cad_jobs``, every minute: run CAD jobs a lost run left ``queued`` or
  ``running`` (``CadService.recover_stranded``) in the background;
- ``remove_unused_uploads``, hourly: delete uploads no print job uses once they are older
  than ``fabrication.upload_retention_days`` (``fabrication.uploads.remove_unused``).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import procrastinate
from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, FabricationJob
from kittylab.adapters.jobs.deferrals import NAMESPACE, Deferred, defer
from kittylab.adapters.jobs.recovery import recover_stalled_jobs
from kittylab.cad.errors import CadBusy, CadGenerationFailed
from kittylab.cad.runs import CadService
from kittylab.config import JobSettings, Settings
from kittylab.conversation import messages, sessions
from kittylab.devices import dispatch, maintenance
from kittylab.devices.ports import DeviceDriver, DeviceTarget, PrintFileUploader
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import FabricationStatus
from kittylab.domain.errors import KittyLabError, ValidationFailed
from kittylab.domain.print_queue import Stage
from kittylab.fabrication import job_details, uploads
from kittylab.fabrication import jobs as fabrication
from kittylab.fabrication.ports import Slicer
from kittylab.monitoring.ports import SnapshotSource
from kittylab.records import notifications
from kittylab.records.ports import ArtifactStore, NotificationSender
from kittylab.safety import evidence, stop, workflow

logger = logging.getLogger(__name__)

SWEEP_TASK = f"{NAMESPACE}:sweep_notifications"
CLEANUP_TASK = f"{NAMESPACE}:cleanup_sessions"
RECOVER_TASK = f"{NAMESPACE}:recover_stalled_jobs"
OFFLINE_TASK = f"{NAMESPACE}:mark_devices_offline"
PURGE_TELEMETRY_TASK = f"{NAMESPACE}:purge_telemetry"
PURGE_MESSAGES_TASK = f"{NAMESPACE}:purge_conversation_messages"
PRINT_QUEUES_TASK = f"{NAMESPACE}:advance_print_queues"
RECONCILE_TASK = f"{NAMESPACE}:reconcile_commands"
EXPIRE_SAFETY_TASK = f"{NAMESPACE}:expire_safety_events"
RESUME_CAD_TASK = f"{NAMESPACE}:resume_cad_jobs"
REMOVE_UPLOADS_TASK = f"{NAMESPACE}:remove_unused_uploads"
EVERY_MINUTE = "* * * * *"
EVERY_5_MINUTES = "*/5 * * * *"
HOURLY = "0 * * * *"
PERIODIC = {
    SWEEP_TASK: EVERY_MINUTE,
    RECOVER_TASK: EVERY_MINUTE,
    OFFLINE_TASK: EVERY_MINUTE,
    CLEANUP_TASK: EVERY_5_MINUTES,
    PURGE_TELEMETRY_TASK: HOURLY,
    PURGE_MESSAGES_TASK: HOURLY,
    RECONCILE_TASK: EVERY_MINUTE,
    PRINT_QUEUES_TASK: EVERY_MINUTE,
    EXPIRE_SAFETY_TASK: EVERY_MINUTE,
    RESUME_CAD_TASK: EVERY_MINUTE,
    REMOVE_UPLOADS_TASK: HOURLY,
}
"""Every periodic task (full name) and its cron schedule."""
CONTEXT_KEY = "kittylab"
SWEEP_BATCH = 500
RECONCILE_GRACE = timedelta(seconds=30)
"""A command younger than this still has its own dispatch job on the way."""


@dataclass(frozen=True)
class JobContext:
    """What tasks need from the application, handed to the worker by ``run_worker``."""

    database: Database
    sender: NotificationSender
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    drivers: Mapping[str, DeviceDriver] = field(default_factory=dict)
    """Device drivers by integration name; empty where no bus runs (no commands sent)."""
    artifacts: ArtifactStore | None = None
    slicer: Slicer | None = None
    gcode_reader: fabrication.GcodeReader | None = None
    cad: CadService | None = None
    snapshots: SnapshotSource | None = None
    """Where camera bookmarks of sent hazardous commands come from (``safety.evidence``)."""

    def __post_init__(self) -> None:
        # Here rather than in the worker: a context is built before the worker task starts,
        # so a bad setting stops `kittylab serve` instead of silently killing its worker.
        check_heartbeat_settings(self.settings.jobs)


def check_heartbeat_settings(jobs: JobSettings) -> None:
    """Raise ``ValidationFailed`` for a stalled-worker timeout of at most two heartbeat
    intervals: one late heartbeat would then get a live worker's running jobs retried."""
    if jobs.stalled_worker_timeout_seconds <= 2 * jobs.heartbeat_interval_seconds:
        raise ValidationFailed(
            "jobs.stalled_worker_timeout_seconds",
            f"must be more than twice jobs.heartbeat_interval_seconds "
            f"({jobs.heartbeat_interval_seconds:g} s); "
            f"it is {jobs.stalled_worker_timeout_seconds:g} s",
        )


def job_blueprint() -> procrastinate.Blueprint:
    """A new blueprint with the KittyLab tasks, to add under the ``NAMESPACE`` namespace.

    A new one per call because adding a blueprint to an app rebinds and renames its
    tasks, so one blueprint object can serve exactly one app.
    """
    blueprint = procrastinate.Blueprint()

    @blueprint.task(name="deliver_notification", pass_context=True)
    async def deliver_notification(job: procrastinate.JobContext, notification_id: str) -> str:
        """One delivery attempt; on failure, when run early, or while another worker's
        claim covers the notification, schedule the next look."""
        ctx = _context(job)
        result = await asyncio.to_thread(
            notifications.deliver,
            ctx.database,
            ctx.sender,
            UUID(notification_id),
            policy=notifications.retry_policy(ctx.settings.notify),
            clock=ctx.clock,
            lease=notifications.claim_lease(ctx.settings.notify),
        )
        if result.retry_in is not None:
            await defer(job.app, Deferred.DELIVERY, notification_id, result.retry_in)
        return result.outcome.value

    # The queueing lock keeps a stopped cluster from piling up sweeps to run on restart.
    @blueprint.periodic(cron=PERIODIC[SWEEP_TASK], periodic_id="every-minute")
    @blueprint.task(name="sweep_notifications", pass_context=True, queueing_lock=SWEEP_TASK)
    async def sweep_notifications(job: procrastinate.JobContext, timestamp: int) -> int:
        """Defer delivery of every due queued notification: catches rows committed whose
        job was never deferred (a crash between commit and defer, a lost job)."""
        ctx = _context(job)
        due = await asyncio.to_thread(_due_notifications, ctx)
        deferred = 0
        for notification_id in due:
            deferred += await defer(job.app, Deferred.DELIVERY, str(notification_id))
        if deferred:
            logger.info("sweep deferred %d notification deliveries", deferred)
        return deferred

    @blueprint.periodic(cron=PERIODIC[CLEANUP_TASK], periodic_id="every-5-minutes")
    @blueprint.task(name="cleanup_sessions", pass_context=True, queueing_lock=CLEANUP_TASK)
    async def cleanup_sessions(job: procrastinate.JobContext, timestamp: int) -> int:
        """Remove conversation sessions idle longer than the configured TTL."""
        return await asyncio.to_thread(_remove_inactive_sessions, _context(job))

    @blueprint.periodic(cron=PERIODIC[RECOVER_TASK], periodic_id="every-minute")
    @blueprint.task(name="recover_stalled_jobs", pass_context=True, queueing_lock=RECOVER_TASK)
    async def recover_stalled(job: procrastinate.JobContext, timestamp: int) -> int:
        """Retry the jobs of workers that stopped sending heartbeats."""
        timeout = _context(job).settings.jobs.stalled_worker_timeout_seconds
        recovery = await recover_stalled_jobs(job.app, seconds_since_heartbeat=timeout)
        return len(recovery.retried)

    @blueprint.periodic(cron=PERIODIC[OFFLINE_TASK], periodic_id="every-minute")
    @blueprint.task(name="mark_devices_offline", pass_context=True, queueing_lock=OFFLINE_TASK)
    async def mark_devices_offline(job: procrastinate.JobContext, timestamp: int) -> int:
        """Mark devices offline that have not reported for ``devices.offline_after_seconds``."""
        return await asyncio.to_thread(_mark_silent_devices_offline, _context(job))

    @blueprint.periodic(cron=PERIODIC[PURGE_TELEMETRY_TASK], periodic_id="hourly")
    @blueprint.task(name="purge_telemetry", pass_context=True, queueing_lock=PURGE_TELEMETRY_TASK)
    async def purge_telemetry(job: procrastinate.JobContext, timestamp: int) -> int:
        """Delete telemetry older than ``telemetry.retention_days``, in batches."""
        return await asyncio.to_thread(_purge_old_telemetry, _context(job))

    @blueprint.periodic(cron=PERIODIC[PURGE_MESSAGES_TASK], periodic_id="hourly")
    @blueprint.task(
        name="purge_conversation_messages", pass_context=True, queueing_lock=PURGE_MESSAGES_TASK
    )
    async def purge_conversation_messages(job: procrastinate.JobContext, timestamp: int) -> int:
        """Delete conversation messages older than ``conversations.message_retention_days``."""
        ctx = _context(job)
        retention = timedelta(days=ctx.settings.conversations.message_retention_days)
        return await asyncio.to_thread(
            messages.purge_old_messages, ctx.database, ctx.clock(), retention
        )

    @blueprint.task(name="dispatch_command", pass_context=True)
    async def dispatch_command(job: procrastinate.JobContext, command_id: str) -> str:
        """Send one device command and wait for the device to confirm it; deliver the
        alert a failed monitor pause raises."""
        ctx = _context(job)
        outcome = await dispatch.dispatch(
            ctx.database,
            ctx.drivers,
            UUID(command_id),
            ctx.settings.commands,
            ctx.clock,
            notify=ctx.settings.notify,
            presence_ttl=timedelta(seconds=ctx.settings.presence.ttl_seconds),
        )
        for notification_id in outcome.notifications:
            await defer(job.app, Deferred.DELIVERY, str(notification_id))
        if outcome.sent_safety_event is not None:
            await defer(job.app, Deferred.BOOKMARK, str(outcome.sent_safety_event))
        return outcome.status.value if outcome.status else "skipped"

    @blueprint.task(name="bookmark_safety_event", pass_context=True)
    async def bookmark_safety_event(job: procrastinate.JobContext, event_id: str) -> str:
        """Keep the zone camera's snapshot as a sent hazardous command's evidence."""
        ctx = _context(job)
        kept = await evidence.bookmark(
            ctx.database,
            ctx.artifacts,
            ctx.snapshots,
            UUID(event_id),
            ctx.clock,
            simulated_cameras=ctx.settings.simulator.camera_base_url,
        )
        if kept is None:
            return "skipped"
        return kept.evidence_key or f"unavailable: {kept.unavailable}"

    @blueprint.task(name="dispatch_in_order", pass_context=True)
    async def dispatch_in_order(job: procrastinate.JobContext, command_ids: str) -> str:
        """Send a stop's commands phase by phase (``safety.stop.send_in_order``); the
        record's key is the commands' ids, comma-separated, in the order asked."""
        ctx = _context(job)
        outcomes = await stop.send_in_order(
            ctx.database,
            ctx.drivers,
            [UUID(part) for part in command_ids.split(",") if part],
            ctx.settings.commands,
            ctx.clock,
            notify=ctx.settings.notify,
        )
        for outcome in outcomes:
            for notification_id in outcome.notifications:
                await defer(job.app, Deferred.DELIVERY, str(notification_id))
        return ", ".join(o.status.value if o.status else "skipped" for o in outcomes)

    @blueprint.periodic(cron=PERIODIC[RECONCILE_TASK], periodic_id="every-minute")
    @blueprint.task(name="reconcile_commands", pass_context=True, queueing_lock=RECONCILE_TASK)
    async def reconcile_commands(job: procrastinate.JobContext, timestamp: int) -> int:
        """Dispatch pending and sent commands no job covers (lost in a crash between commit
        and defer, or in a queue outage); dispatch itself expires stale ones."""
        ctx = _context(job)
        waiting = await asyncio.to_thread(
            dispatch.unfinished, ctx.database, ctx.clock() - RECONCILE_GRACE
        )
        deferred = 0
        for command_id in waiting:
            deferred += await defer(job.app, Deferred.DISPATCH, str(command_id))
        if deferred:
            logger.info("reconcile deferred %d device command dispatches", deferred)
        return deferred

    @blueprint.periodic(cron=PERIODIC[EXPIRE_SAFETY_TASK], periodic_id="every-minute")
    @blueprint.task(
        name="expire_safety_events", pass_context=True, queueing_lock=EXPIRE_SAFETY_TASK
    )
    async def expire_safety_events(job: procrastinate.JobContext, timestamp: int) -> int:
        """Deny hazardous requests nobody approved in time; their commands fail unsent."""
        ctx = _context(job)
        expired = await asyncio.to_thread(_expire_safety_events, ctx)
        if expired:
            logger.info("%d safety events expired unapproved", expired)
        return expired

    @blueprint.task(name="prepare_print_job", pass_context=True)
    async def prepare_print_job(job: procrastinate.JobContext, job_id: str) -> str:
        """Slice (or read) a print job's file, then let its printer's queue move."""
        ctx = _context(job)
        if ctx.artifacts is None:
            raise TypeError("the worker was started without an artifact store")
        queued = await asyncio.to_thread(
            fabrication.prepare,
            ctx.database,
            ctx.artifacts,
            ctx.slicer,
            ctx.gcode_reader,
            UUID(job_id),
            ctx.clock,
        )
        if queued:
            device_id = await asyncio.to_thread(_device_of_job, ctx, UUID(job_id))
            await defer(job.app, Deferred.START_NEXT, str(device_id))
        return "queued" if queued else "not queued"

    @blueprint.task(name="start_next_print", pass_context=True)
    async def start_next_print(job: procrastinate.JobContext, device_id: str) -> str:
        """Start the next queued job on a printer, if it is free and its bed is clear."""
        ctx = _context(job)
        plan = await asyncio.to_thread(
            fabrication.claim_next, ctx.database, UUID(device_id), ctx.clock()
        )
        if not isinstance(plan, fabrication.StartPlan):
            return plan or "nothing queued"
        try:
            await _upload_to_printer(ctx, plan)
        except KittyLabError as exc:
            await asyncio.to_thread(
                fabrication.requeue, ctx.database, plan.job_id, f"upload failed: {exc}"
            )
            return "upload failed"
        command_id = await asyncio.to_thread(
            fabrication.submit_start, ctx.database, plan, ctx.clock()
        )
        if command_id is None:
            return "printer refused; job back in the queue"
        await defer(job.app, Deferred.DISPATCH, str(command_id))
        return f"starting {plan.job_id}"

    @blueprint.periodic(cron=PERIODIC[PRINT_QUEUES_TASK], periodic_id="every-minute")
    @blueprint.task(name="advance_print_queues", pass_context=True, queueing_lock=PRINT_QUEUES_TASK)
    async def advance_print_queues(job: procrastinate.JobContext, timestamp: int) -> int:
        """Let every printer with queued jobs try to start one, and give jobs whose
        preparation job was lost (a queue outage right after they were accepted) another."""
        ctx = _context(job)
        printers = await asyncio.to_thread(_printers_with_queued_jobs, ctx)
        for device_id in printers:
            await defer(job.app, Deferred.START_NEXT, str(device_id))
        for job_id in await asyncio.to_thread(_jobs_stuck_preparing, ctx):
            await defer(job.app, Deferred.PREPARATION, str(job_id))
        return len(printers)

    @blueprint.task(name="generate_cad", pass_context=True)
    async def generate_cad(job: procrastinate.JobContext, cad_job_id: str) -> str:
        """Run an online or auto CAD job through its providers; a failure is recorded on
        the job and alerted by the service, so it is not retried here."""
        ctx = _context(job)
        if ctx.cad is None:
            raise RuntimeError("this worker has no CAD service")
        try:
            await asyncio.to_thread(ctx.cad.run_job, UUID(cad_job_id))
        except CadGenerationFailed:
            return "failed"
        except CadBusy:
            return "failed: every CAD worker was busy"
        return "completed"

    @blueprint.periodic(cron=PERIODIC[RESUME_CAD_TASK], periodic_id="every-minute")
    @blueprint.task(name="resume_cad_jobs", pass_context=True, queueing_lock=RESUME_CAD_TASK)
    async def resume_cad_jobs(job: procrastinate.JobContext, timestamp: int) -> int:
        """Defer a run of every CAD job a lost run left behind (never deferred, or its
        process died mid-build); jobs whose runs keep dying are failed by the service."""
        ctx = _context(job)
        if ctx.cad is None:
            return 0
        stranded = await asyncio.to_thread(ctx.cad.recover_stranded, ctx.clock())
        deferred = 0
        for cad_job_id in stranded.resume:
            deferred += await defer(job.app, Deferred.CAD, str(cad_job_id))
        if deferred or stranded.abandoned:
            logger.info(
                "CAD recovery deferred %d runs, abandoned %d jobs",
                deferred,
                len(stranded.abandoned),
            )
        return deferred

    @blueprint.periodic(cron=PERIODIC[REMOVE_UPLOADS_TASK], periodic_id="hourly")
    @blueprint.task(
        name="remove_unused_uploads", pass_context=True, queueing_lock=REMOVE_UPLOADS_TASK
    )
    async def remove_unused_uploads(job: procrastinate.JobContext, timestamp: int) -> int:
        """Delete uploads past their retention that no print job uses (audited)."""
        ctx = _context(job)
        if ctx.artifacts is None:
            raise TypeError("the worker was started without an artifact store")
        retention = timedelta(days=ctx.settings.fabrication.upload_retention_days)
        removed = await asyncio.to_thread(
            uploads.remove_unused, ctx.database, ctx.artifacts, ctx.clock(), retention
        )
        if removed:
            logger.info(
                "removed %d unused uploads (%d bytes)",
                len(removed),
                sum(gone.size for gone in removed),
            )
        return len(removed)

    return blueprint


async def _upload_to_printer(ctx: JobContext, plan: fabrication.StartPlan) -> None:
    """Put the G-code on printers that keep their own files; others take the name only.
    A job for a file already on the printer's storage has nothing to put there."""
    if plan.on_printer:
        return
    driver = ctx.drivers.get(await asyncio.to_thread(_integration_of, ctx, plan.device_id))
    if not isinstance(driver, PrintFileUploader) or ctx.artifacts is None:
        return
    target = await asyncio.to_thread(_target_of, ctx, plan.device_id)
    with tempfile.TemporaryDirectory(prefix="kittylab-upload-") as tmp:
        local = Path(tmp) / plan.filename
        await asyncio.to_thread(ctx.artifacts.download_to, plan.gcode_path, local)
        await driver.upload(target, plan.filename, local)


def _integration_of(ctx: JobContext, device_id: UUID) -> str:
    with ctx.database.unit_of_work() as session:
        device = session.get(Device, device_id)
        return device.integration if device else ""


def _target_of(ctx: JobContext, device_id: UUID) -> DeviceTarget:
    with ctx.database.unit_of_work() as session:
        device = session.get(Device, device_id)
        assert device is not None
        return dispatch.target_of(device)


def _device_of_job(ctx: JobContext, job_id: UUID) -> UUID:
    with ctx.database.unit_of_work() as session:
        row = session.get(FabricationJob, job_id)
        assert row is not None
        return row.device_id


PREPARE_GRACE = timedelta(minutes=10)
"""Longer than a slice may take (the slicer timeout is 5 minutes), so a slow preparation
still running is not started twice."""


def _jobs_stuck_preparing(ctx: JobContext) -> list[UUID]:
    """Jobs still in the slicing stage well after they were accepted. Preparation is
    idempotent (it only acts on a job still in that stage), so a second run is harmless."""
    with ctx.database.unit_of_work() as session:
        return list(
            session.scalars(
                select(FabricationJob.id).where(
                    FabricationJob.status == FabricationStatus.PREPARING,
                    job_details.in_stage(Stage.SLICING),
                    FabricationJob.created_at < ctx.clock() - PREPARE_GRACE,
                )
            )
        )


def _printers_with_queued_jobs(ctx: JobContext) -> list[UUID]:
    with ctx.database.unit_of_work() as session:
        return list(
            session.scalars(
                select(FabricationJob.device_id)
                .where(
                    FabricationJob.status == FabricationStatus.PREPARING,
                    job_details.in_stage(Stage.QUEUED),
                )
                .distinct()
            )
        )


def _context(job: procrastinate.JobContext) -> JobContext:
    context = job.additional_context.get(CONTEXT_KEY)
    if not isinstance(context, JobContext):
        raise TypeError(f"the worker was started without a {JobContext.__name__}")
    return context


def _due_notifications(ctx: JobContext) -> list[UUID]:
    with ctx.database.unit_of_work() as session:
        return notifications.due_for_delivery(session, ctx.clock(), SWEEP_BATCH)


def _remove_inactive_sessions(ctx: JobContext) -> int:
    ttl = timedelta(seconds=ctx.settings.sessions.inactivity_ttl_seconds)
    with ctx.database.unit_of_work() as session:
        return sessions.remove_inactive_sessions(session, ctx.clock(), ttl)


def _mark_silent_devices_offline(ctx: JobContext) -> int:
    silent_for = timedelta(seconds=ctx.settings.devices.offline_after_seconds)
    with ctx.database.unit_of_work() as session:
        return maintenance.mark_silent_devices_offline(session, ctx.clock(), silent_for)


def _purge_old_telemetry(ctx: JobContext) -> int:
    telemetry = ctx.settings.telemetry
    return maintenance.purge_old_telemetry(
        ctx.database,
        ctx.clock(),
        timedelta(days=telemetry.retention_days),
        batch_size=telemetry.purge_batch_size,
    )


def _expire_safety_events(ctx: JobContext) -> int:
    with ctx.database.unit_of_work() as session:
        expired = workflow.expire_due(session, ctx.clock(), ctx.settings.notify)
    return len(expired)
