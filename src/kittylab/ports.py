"""The ports every capability shares: the message bus and the job queue. A capability's
own ports are in its package's ``ports`` module.

Ports: the small interfaces services need from the outside world. Adapters implement
them; bootstrap chooses which; tests may pass fakes of these (and only these)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID


class JobQueue(Protocol):
    """Schedules background jobs. Use cases register these calls on their unit of work
    (``uow.after_commit(jobs.defer_dispatch, command.id)``) so a job never runs before
    the rows it works on are committed; one that fails is caught up by the periodic task
    ``CAUGHT_UP_BY`` names."""

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        """Schedule delivery of a queued notification. Deferring one that already has a
        job waiting is a no-op, so callers may defer freely."""

    def defer_dispatch(self, command_id: UUID) -> None:
        """Schedule sending a pending device command; a no-op when a job for it waits."""

    def defer_dispatch_in_order(self, command_ids: Sequence[UUID]) -> None:
        """Schedule sending pending commands that must reach their devices in an order
        (a stop's: ``safety.stop.send_in_order``) with one job."""

    def defer_print_preparation(self, job_id: UUID) -> None:
        """Schedule slicing (or reading) a new print job's file."""

    def defer_start_next(self, device_id: UUID) -> None:
        """Let a printer's queue move; a no-op when a look is already waiting."""


CAUGHT_UP_BY: Mapping[str, str] = {
    "defer_dispatch": "reconcile_commands",
    "defer_dispatch_in_order": "reconcile_commands",
    "defer_notification": "sweep_notifications",
    "defer_print_preparation": "advance_print_queues",
    "defer_start_next": "advance_print_queues",
    "defer_cad_job": "resume_cad_jobs",
}
"""Which periodic task redoes a deferral that failed after its commit, by method name
(``JobQueue``'s and ``cad.ports.CadJobQueue``'s): a lost job is late, never lost."""


class MessageBus(Protocol):
    """The publish/subscribe bus (MQTT) as services see it."""

    def publish(
        self,
        topic: str,
        payload: bytes | str | Mapping[str, Any] | list[Any],
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Queue a message; delivered once connected (from any thread)."""

    def subscribe(
        self, topic_filter: str, handler: Callable[[str, bytes], Awaitable[None]]
    ) -> None:
        """Call ``handler(topic, payload)`` on the bus's loop for each matching message."""
