"""One use case for every device command request: ``request_command``.

The command route, the conversation, fabrication (a cancel, the tracker's scenes) and the
print monitors (a failure's pause, a runaway's cooldown) all ask for a command here. It
checks and records the command in the caller's unit of work (``dispatch.submit``: rules,
state, safety) and registers what follows once that commits:

- a command to send now: its dispatch job (``JobQueue.defer_dispatch``; a lost job is
  sent by ``reconcile_commands``);
- a hazardous command held for approval: nothing is sent; its safety event is announced
  on ``kitty/safety/<eventId>`` (``safety.workflow.announce``) and the caller answers with
  ``HeldCommand.pending_hazard``, the same object on every route.

A retried request (same ``correlation_id``) returns the first command and registers the
same follow-ups again: a dispatch job already waiting makes the second a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from kittylab.adapters.db.tables import DeviceCommand
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.devices import dispatch
from kittylab.domain.enums import CommandStatus, SafetyStatus
from kittylab.ports import JobQueue, MessageBus
from kittylab.safety import held as holding
from kittylab.safety import workflow


@dataclass(frozen=True)
class Requested:
    command: DeviceCommand
    held: holding.HeldCommand | None = None
    """Set when the command waits for safety approval (nothing was sent)."""


def request_command(
    uow: UnitOfWork,
    *,
    jobs: JobQueue,
    device_id: UUID,
    intent: str,
    payload: Mapping[str, Any],
    requested_by: UUID,
    now: datetime,
    correlation_id: str | None = None,
    conversation_id: UUID | None = None,
    safety_context: workflow.SafetyContext | None = None,
    bus: MessageBus | None = None,
) -> Requested:
    """Record the command and register its follow-ups on ``uow`` (see the module doc).

    Refusals are ``dispatch.submit``'s (``NotFound``, ``PermissionDenied``,
    ``DeviceRefused``, ``ValidationFailed``…), raised before anything is registered.
    Without a ``safety_context`` (internal callers) a hazardous intent is refused, never
    held. ``bus`` None: no announcement (a process without MQTT)."""
    command = dispatch.submit(
        uow,
        device_id=device_id,
        intent=intent,
        payload=payload,
        requested_by=requested_by,
        now=now,
        correlation_id=correlation_id,
        conversation_id=conversation_id,
        safety_context=safety_context,
    )
    if command.status is not CommandStatus.PENDING:
        return Requested(command)  # a retry of one already sent (or decided)
    if command.safety_event_id is not None:
        event = workflow.get(uow, command.safety_event_id)
        if event.status is SafetyStatus.PENDING:
            if safety_context is None:
                # Only a retry could get here (internal callers never hold a command):
                # it stays held, and nothing is sent.
                return Requested(command)
            workflow.announce(uow, bus, event, now)
            return Requested(command, holding.held(uow, command, event, now, safety_context))
    uow.after_commit(jobs.defer_dispatch, command.id)
    return Requested(command)
