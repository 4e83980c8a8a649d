"""The one table of deferred tasks: what ``ProcrastinateQueue`` (synchronous callers) and
the worker's own tasks (``kittylab.worker.tasks``, asynchronously) defer, by the same task
name, argument and locks whichever side defers.

The names are stored with every queued job in PostgreSQL, so they are pinned here (and by
``name=`` on each task of the worker's blueprint, added under ``NAMESPACE``), never derived
from a module path: a job queued before an upgrade still finds its task. A unit test checks
that the worker registers every task this table names, with its argument.

Importing this module loads no use case: the adapters defer by name, the worker runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.types import TimeDeltaParams

NAMESPACE = "kittylab"
DELIVER_TASK = f"{NAMESPACE}:deliver_notification"
DISPATCH_TASK = f"{NAMESPACE}:dispatch_command"
DISPATCH_IN_ORDER_TASK = f"{NAMESPACE}:dispatch_in_order"
BOOKMARK_TASK = f"{NAMESPACE}:bookmark_safety_event"
PREPARE_PRINT_TASK = f"{NAMESPACE}:prepare_print_job"
START_PRINT_TASK = f"{NAMESPACE}:start_next_print"
CAD_TASK = f"{NAMESPACE}:generate_cad"


def dispatch_lock(command_id: str) -> str:
    """At most one dispatch job per command waits at a time."""
    return f"command:{command_id}"


def in_order_lock(command_ids: str) -> str:
    """One ordered dispatch per set of commands (named by the first command's id)."""
    return f"in-order:{command_ids.split(',', 1)[0]}"


def bookmark_lock(event_id: str) -> str:
    return f"bookmark:{event_id}"


def cad_lock(cad_job_id: str) -> str:
    """Queueing lock and lock of a CAD job's run: at most one waits, and one runs at a
    time (a re-deferred run waits for the one under way, then finds the job finished)."""
    return f"cad:{cad_job_id}"


def print_queue_lock(device_id: str) -> str:
    return f"print-queue:{device_id}"


def preparation_lock(job_id: str) -> str:
    """At most one preparation job per print job waits (preparing is idempotent anyway)."""
    return f"prepare:{job_id}"


def delivery_lock(notification_id: str) -> str:
    """The queueing lock of a notification's delivery job: at most one waits at a time."""
    return f"notification:{notification_id}"


def schedule_in(delay: timedelta) -> TimeDeltaParams | None:
    """procrastinate's ``schedule_in`` for ``delay``, or None to run as soon as possible."""
    milliseconds = max(0, round(delay.total_seconds() * 1000))
    return {"milliseconds": milliseconds} if milliseconds else None


class Deferred(StrEnum):
    """The jobs deferred one per record (as opposed to the periodic ones)."""

    DISPATCH = "dispatch"
    DISPATCH_IN_ORDER = "dispatch_in_order"
    BOOKMARK = "bookmark"
    DELIVERY = "delivery"
    PREPARATION = "preparation"
    START_NEXT = "start_next"
    CAD = "cad"


@dataclass(frozen=True)
class Deferral:
    """How one kind of job is deferred: its task, the argument naming its record, and
    its locks (computed from that record's id)."""

    task: str
    argument: str
    what: str
    """The record, in words, for errors: ``cannot defer dispatch of command <id>``."""
    queueing_lock: Callable[[str], str]
    lock: Callable[[str], str] | None = None


DEFERRALS: Mapping[Deferred, Deferral] = {
    Deferred.DISPATCH: Deferral(DISPATCH_TASK, "command_id", "dispatch of command", dispatch_lock),
    Deferred.DISPATCH_IN_ORDER: Deferral(
        DISPATCH_IN_ORDER_TASK, "command_ids", "ordered dispatch of commands", in_order_lock
    ),
    Deferred.BOOKMARK: Deferral(
        BOOKMARK_TASK, "event_id", "camera bookmark of event", bookmark_lock
    ),
    Deferred.DELIVERY: Deferral(
        DELIVER_TASK, "notification_id", "delivery of notification", delivery_lock
    ),
    Deferred.PREPARATION: Deferral(
        PREPARE_PRINT_TASK, "job_id", "preparation of print job", preparation_lock
    ),
    Deferred.START_NEXT: Deferral(
        START_PRINT_TASK, "device_id", "the print queue of", print_queue_lock
    ),
    Deferred.CAD: Deferral(CAD_TASK, "cad_job_id", "CAD job", cad_lock, lock=cad_lock),
}
"""The one table of deferred tasks, used by the synchronous ``queue.ProcrastinateQueue``
and by the worker's tasks (``defer``): the same name and locks whichever side defers."""


def configured(
    app: procrastinate.App,
    kind: Deferred,
    key: str,
    delay: timedelta = timedelta(0),
    *,
    allow_unknown: bool = False,
) -> tuple[Any, dict[str, str]]:
    """The task of ``kind`` configured for the record ``key`` (its locks, its delay), and
    the keyword arguments to defer it with. ``allow_unknown``: ``app`` has not registered
    the task (``ProcrastinateQueue``) and defers it by its name; the job stored is the same,
    since no deferred task sets a queue, priority or lock of its own."""
    deferral = DEFERRALS[kind]
    task = app.configure_task(
        deferral.task,
        allow_unknown=allow_unknown,
        queueing_lock=deferral.queueing_lock(key),
        lock=deferral.lock(key) if deferral.lock is not None else None,
        schedule_in=schedule_in(delay),
    )
    return task, {deferral.argument: key}


async def defer(
    app: procrastinate.App, kind: Deferred, key: str, delay: timedelta = timedelta(0)
) -> bool:
    """Defer the job of ``kind`` for ``key`` unless one is already waiting; return whether
    one was added."""
    task, arguments = configured(app, kind, key, delay)
    try:
        await task.defer_async(**arguments)
    except AlreadyEnqueued:
        return False
    return True
