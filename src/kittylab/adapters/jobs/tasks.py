"""The background tasks, as a procrastinate blueprint.

Tasks are thin: they take the application's objects from the worker's additional
context (``JobContext`` under ``CONTEXT_KEY``), run the synchronous service code in a
thread, and schedule follow-up jobs. Retries are the services' business (the policy and
the attempt count live on the notification row), so procrastinate's own retry is off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.types import TimeDeltaParams

from kittylab.adapters.db.engine import Database
from kittylab.config import Settings
from kittylab.domain.clock import utcnow
from kittylab.services import notifications, sessions
from kittylab.services.ports import NotificationSender

logger = logging.getLogger(__name__)

NAMESPACE = "kittylab"
DELIVER_TASK = f"{NAMESPACE}:deliver_notification"
SWEEP_TASK = f"{NAMESPACE}:sweep_notifications"
CLEANUP_TASK = f"{NAMESPACE}:cleanup_sessions"
CONTEXT_KEY = "kittylab"
SWEEP_BATCH = 500


@dataclass(frozen=True)
class JobContext:
    """What tasks need from the application, handed to the worker by ``run_worker``."""

    database: Database
    sender: NotificationSender
    settings: Settings
    clock: Callable[[], datetime] = utcnow


def delivery_lock(notification_id: str) -> str:
    """The queueing lock of a notification's delivery job: at most one waits at a time."""
    return f"notification:{notification_id}"


def schedule_in(delay: timedelta) -> TimeDeltaParams | None:
    """procrastinate's ``schedule_in`` for ``delay``, or None to run as soon as possible."""
    milliseconds = max(0, round(delay.total_seconds() * 1000))
    return {"milliseconds": milliseconds} if milliseconds else None


async def defer_delivery(app: procrastinate.App, notification_id: str, delay: timedelta) -> bool:
    """Defer a delivery job unless one is already waiting; return whether one was added."""
    try:
        await app.configure_task(
            DELIVER_TASK,
            queueing_lock=delivery_lock(notification_id),
            schedule_in=schedule_in(delay),
        ).defer_async(notification_id=notification_id)
    except AlreadyEnqueued:
        return False
    return True


def job_blueprint() -> procrastinate.Blueprint:
    """A new blueprint with the KittyLab tasks, to add under the ``NAMESPACE`` namespace.

    A new one per call because adding a blueprint to an app rebinds and renames its
    tasks, so one blueprint object can serve exactly one app.
    """
    blueprint = procrastinate.Blueprint()

    @blueprint.task(name="deliver_notification", pass_context=True)
    async def deliver_notification(job: procrastinate.JobContext, notification_id: str) -> str:
        """One delivery attempt; on failure (or when run early) schedule the next one."""
        ctx = _context(job)
        result = await asyncio.to_thread(
            notifications.deliver,
            ctx.database,
            ctx.sender,
            UUID(notification_id),
            now=ctx.clock(),
            policy=notifications.retry_policy(ctx.settings.notify),
        )
        if result.retry_in is not None:
            await defer_delivery(job.app, notification_id, result.retry_in)
        return result.outcome.value

    # The queueing lock keeps a stopped cluster from piling up sweeps to run on restart.
    @blueprint.periodic(cron="* * * * *", periodic_id="every-minute")
    @blueprint.task(name="sweep_notifications", pass_context=True, queueing_lock=SWEEP_TASK)
    async def sweep_notifications(job: procrastinate.JobContext, timestamp: int) -> int:
        """Defer delivery of every due queued notification: catches rows committed whose
        job was never deferred (a crash between commit and defer, a lost job)."""
        ctx = _context(job)
        due = await asyncio.to_thread(_due_notifications, ctx)
        deferred = 0
        for notification_id in due:
            deferred += await defer_delivery(job.app, str(notification_id), timedelta(0))
        if deferred:
            logger.info("sweep deferred %d notification deliveries", deferred)
        return deferred

    @blueprint.periodic(cron="*/5 * * * *", periodic_id="every-5-minutes")
    @blueprint.task(name="cleanup_sessions", pass_context=True, queueing_lock=CLEANUP_TASK)
    async def cleanup_sessions(job: procrastinate.JobContext, timestamp: int) -> int:
        """Remove conversation sessions idle longer than the configured TTL."""
        return await asyncio.to_thread(_remove_inactive_sessions, _context(job))

    return blueprint


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
