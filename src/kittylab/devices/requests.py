"""One use case for every device command request: ``request_command``.

The command route, the conversation, fabrication (a cancel, the tracker's scenes) and the
print monitors (a failure's pause, a runaway's cooldown) all ask for a command here. It
first authorises the requester by the role × intent-class table (``authorise_request``,
``domain.actuation``: the one gate, whatever the path), then checks and records the
command in the caller's unit of work (``dispatch.submit``: rules, state, safety) and
registers what follows once that commits:

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

from sqlalchemy import select

from kittylab.adapters.db.tables import DeviceCommand, FabricationJob
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.devices import dispatch
from kittylab.domain import actuation
from kittylab.domain.actuation import Requester, SystemActor
from kittylab.domain.enums import CommandStatus, FabricationStatus, SafetyStatus
from kittylab.domain.errors import PermissionDenied, ValidationFailed
from kittylab.ports import JobQueue, MessageBus
from kittylab.safety import held as holding
from kittylab.safety import workflow

PRINT_IS_A_JOB = "print_start"
"""The intent a person never sends directly: it becomes a print job (issue 16)."""


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
    requester: Requester,
    now: datetime,
    correlation_id: str | None = None,
    conversation_id: UUID | None = None,
    safety_context: workflow.SafetyContext | None = None,
    bus: MessageBus | None = None,
    for_job: UUID | None = None,
) -> Requested:
    """Record the command and register its follow-ups on ``uow`` (see the module doc).

    ``requester`` is the caller's ``Principal``, or a ``SystemActor`` for the service's own
    processes (its ``on_behalf_of`` is recorded as the requester). ``for_job``: the print
    job the request is about (a cancel of that job), for the owner rule.

    ``PermissionDenied`` when the table refuses the requester (``authorise_request``),
    before anything is recorded. Other refusals are ``dispatch.submit``'s (``NotFound``,
    ``PermissionDenied``, ``DeviceRefused``, ``ValidationFailed``…), raised before anything
    is registered.
    Without a ``safety_context`` (internal callers) a hazardous intent is refused, never
    held. ``bus`` None: no announcement (a process without MQTT). A person's
    ``print_start`` is ``ValidationFailed`` on ``intent``: it is a print job
    (``fabrication.print_requests``), never a bare command."""
    if intent == PRINT_IS_A_JOB and not isinstance(requester, SystemActor):
        # Issue 16: a person's print_start is a print job (fabrication.print_requests), so
        # that it is queued, tracked and watched; only the service's own start of a job
        # sends one. Refused here, the one gate, so that no path prints unmonitored.
        raise ValidationFailed(
            "intent",
            "a print_start asked by a person is a print job: fabrication.print_requests "
            "records it (POST /api/device/{id}/command and the conversation do)",
        )
    authorise_request(uow, requester, device_id=device_id, intent=intent, for_job=for_job)
    command = dispatch.submit(
        uow,
        device_id=device_id,
        intent=intent,
        payload=payload,
        requested_by=actuation.requester_id(requester),
        now=now,
        correlation_id=correlation_id,
        conversation_id=conversation_id,
        safety_context=safety_context,
    )
    if command.status is not CommandStatus.PENDING:
        return Requested(command)  # a retry of one already sent (or decided)
    if command.safety_event_id is not None:
        if not _may_actuate(requester):
            # A held command is an actuation: the owner rule opens the safe direction only.
            raise PermissionDenied(
                f"{intent} here is held for approval, and asking for it needs the "
                "operator, safety or admin role"
            )
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


_ACTIVE = (FabricationStatus.PREPARING, FabricationStatus.PRINTING, FabricationStatus.PAUSED)


def authorise_request(
    uow: UnitOfWork,
    requester: Requester,
    *,
    device_id: UUID,
    intent: str,
    for_job: UUID | None = None,
) -> None:
    """The gate: ``actuation.authorise`` with the owner rule looked up here. A person owns
    the request's print job when ``for_job`` is theirs and on ``device_id``, or (no
    ``for_job``: a pause or cancel said to the conversation) when a job of theirs is
    preparing, printing or paused on ``device_id``. ``PermissionDenied`` otherwise."""
    owns = False
    if (
        not _may_actuate(requester)
        and actuation.intent_class(intent) is actuation.IntentClass.SAFE_DIRECTION
    ):
        stmt = select(FabricationJob.id).where(
            FabricationJob.device_id == device_id,
            FabricationJob.requested_by == actuation.requester_id(requester),
        )
        if for_job is not None:
            stmt = stmt.where(FabricationJob.id == for_job)
        else:
            stmt = stmt.where(FabricationJob.status.in_(_ACTIVE))
        owns = uow.scalar(stmt.limit(1)) is not None
    actuation.authorise(requester, intent, owns_job_on_device=owns)


def _may_actuate(requester: Requester) -> bool:
    return isinstance(requester, SystemActor) or requester.has_any(*actuation.ACTUATING_ROLES)
