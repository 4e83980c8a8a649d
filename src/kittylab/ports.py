"""The ports every capability shares: the message bus and the job queue. A capability's
own ports are in its package's ``ports`` module.

Ports: the small interfaces services need from the outside world. Adapters implement
them; bootstrap chooses which; tests may pass fakes of these (and only these)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from uuid import UUID


class JobQueue(Protocol):
    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        """Schedule delivery of a queued notification. Deferring one that already has a
        job waiting is a no-op, so callers may defer freely."""

    def defer_dispatch(self, command_id: UUID) -> None:
        """Schedule sending a pending device command; a no-op when a job for it waits."""

    def defer_print_preparation(self, job_id: UUID) -> None:
        """Schedule slicing (or reading) a new print job's file."""

    def defer_start_next(self, device_id: UUID) -> None:
        """Let a printer's queue move; a no-op when a look is already waiting."""


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
