"""Send a device command from the process that accepted it, right after its commit.

The normal path of a command in ``kittylab serve``: the request's unit of work commits
the command ``pending`` and its follow-up (``JobQueue.defer_dispatch``, registered by
``requests.request_command``) hands the id to this process's event loop, which runs
``dispatch.dispatch`` at once: the claim (``pending → sent``, committed under the device's
row lock, with the last-moment checks), the send, the wait for the device's state. No job
row is written, no worker has to notice one, and no worker slot is held while a device
confirms, which is what capped the lab at ``jobs.concurrency`` commands in flight.

The durable paths stay the backstop, never the normal path:

- this process not serving (the CLI, tests without a loop), too many commands in flight,
  or the loop gone: ``defer_dispatch`` falls through to the durable job queue;
- a dispatch that fails before its claim commits (the database restarting): the command is
  handed to the durable queue from a thread;
- the process dies between the commit and the claim: the command is ``pending`` in the
  database, and the next start (``recover``) or the minutely ``reconcile_commands`` sends
  it, once: the claim is what makes a send happen at most once, whoever runs it.

Every other deferral goes to the durable queue unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from kittylab.adapters.db.engine import Database
from kittylab.config import CommandSettings, NotifySettings
from kittylab.devices import dispatch
from kittylab.devices.ports import DeviceDriver
from kittylab.ports import JobQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Wiring:
    """What ``dispatch.dispatch`` works with, given by ``start``."""

    database: Database
    drivers: Mapping[str, DeviceDriver]
    settings: CommandSettings
    notify: NotifySettings
    clock: Callable[[], datetime]


MAX_IN_FLIGHT = 512
"""Commands dispatched by this process at once before new ones go to the job queue: each
is a coroutine (cheap), but one that waits for a slow device holds its place until the
confirmation timeout."""


class InlineDispatcher:
    """A ``JobQueue`` that dispatches device commands on this process's event loop once
    ``start`` has attached it, and delegates everything else (and everything before
    ``start``) to ``durable``."""

    def __init__(self, durable: JobQueue, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.durable = durable
        self._max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._wiring: _Wiring | None = None

    # -- lifecycle (the serving process) ---------------------------------------------

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        database: Database,
        drivers: Mapping[str, DeviceDriver],
        settings: CommandSettings,
        notify: NotifySettings,
        clock: Callable[[], datetime],
    ) -> None:
        """Dispatch on ``loop`` from now on (the loop the device drivers' bus runs on)."""
        self._wiring = _Wiring(database, drivers, settings, notify, clock)
        self._loop = loop

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop taking commands; give those in flight ``grace_seconds``, then cancel
        them (a cancelled one is ``pending`` or ``sent`` in the database, and the next
        start's ``recover`` or ``reconcile_commands`` finishes it)."""
        self._loop = None
        if not self._tasks:
            return
        _, running = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=grace_seconds)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def recover(self, started_at: datetime) -> int:
        """Dispatch the commands left unfinished before ``started_at`` (a crash between a
        commit and its send, or during a confirmation): at once on start, instead of at
        the next minutely reconcile. Returns how many were taken up."""
        assert self._wiring is not None, "start() first"
        waiting = await asyncio.to_thread(dispatch.unfinished, self._wiring.database, started_at)
        for command_id in waiting:
            self.defer_dispatch(command_id)
        if waiting:
            log.info("dispatching %d commands left unfinished before this start", len(waiting))
        return len(waiting)

    # -- JobQueue --------------------------------------------------------------------

    def defer_dispatch(self, command_id: UUID) -> None:
        """Dispatch ``command_id`` on the loop now; the durable queue when this process
        does not serve or is saturated (see the module doc)."""
        loop = self._loop
        if loop is None or loop.is_closed() or len(self._tasks) >= self._max_in_flight:
            self.durable.defer_dispatch(command_id)
            return
        try:
            loop.call_soon_threadsafe(self._spawn, command_id)
        except RuntimeError:  # the loop closed meanwhile
            self.durable.defer_dispatch(command_id)

    def defer_dispatch_in_order(self, command_ids: Sequence[UUID]) -> None:
        """An ordered series (a stop's) goes to its one durable job, which sends them one
        after another."""
        self.durable.defer_dispatch_in_order(command_ids)

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        self.durable.defer_notification(notification_id, delay_seconds=delay_seconds)

    def defer_print_preparation(self, job_id: UUID) -> None:
        self.durable.defer_print_preparation(job_id)

    def defer_start_next(self, device_id: UUID) -> None:
        self.durable.defer_start_next(device_id)

    # -- on the loop -------------------------------------------------------------------

    def _spawn(self, command_id: UUID) -> None:
        if self._loop is None:  # stopped meanwhile: the durable queue, from a thread
            asyncio.get_running_loop().run_in_executor(None, self._to_durable, command_id)
            return
        task = asyncio.get_running_loop().create_task(
            self._run(command_id), name=f"dispatch-{command_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, command_id: UUID) -> None:
        wiring = self._wiring
        assert wiring is not None  # spawned only after start()
        try:
            outcome = await dispatch.dispatch(
                wiring.database,
                wiring.drivers,
                command_id,
                wiring.settings,
                wiring.clock,
                notify=wiring.notify,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # Before its claim committed, nothing was sent: the durable job sends it (and
            # if the claim did commit, that job only waits for the confirmation).
            log.warning(
                "device command %s: dispatching in process failed; handing it to the job queue",
                command_id,
                exc_info=True,
            )
            await asyncio.to_thread(self._to_durable, command_id)
            return
        for notification_id in outcome.notifications:
            try:
                await asyncio.to_thread(self.durable.defer_notification, notification_id)
            except Exception as exc:  # recorded already: sweep_notifications delivers it
                log.warning("notification %s not queued (%s)", notification_id, exc)

    def _to_durable(self, command_id: UUID) -> None:
        try:
            self.durable.defer_dispatch(command_id)
        except Exception as exc:  # the minutely reconcile is the last backstop
            log.warning(
                "device command %s could not be queued either (%s); reconcile_commands sends it",
                command_id,
                exc,
            )
