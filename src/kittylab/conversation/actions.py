"""The conversation's command path: device requests understood by ``/api/query`` go to
equipment through the same rules and dispatch as ``POST /api/device/{id}/command``, and
each turn's context is shared on the bus."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import event
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, DeviceCommand
from kittylab.cad.planning import PolicyMode
from kittylab.cad.runs import CadService, GenerateRequest, progress_reply
from kittylab.devices import dispatch
from kittylab.domain import topics
from kittylab.domain.enums import CommandStatus
from kittylab.domain.errors import KittyLabError
from kittylab.ports import JobQueue, MessageBus
from kittylab.safety import workflow
from kittylab.safety.workflow import SafetyContext

log = logging.getLogger(__name__)


class DispatchingSubmitter:
    """``CommandSubmitter`` that sends. The command is checked and recorded by
    ``dispatch.submit`` (state preconditions, hazards held for approval) in the turn's
    transaction; its dispatch job is deferred once that transaction commits, so the job
    never looks for a command that does not exist yet."""

    def __init__(
        self, jobs: JobQueue, clock: Callable[[], datetime], safety_context: SafetyContext
    ) -> None:
        self._jobs = jobs
        self._clock = clock
        self._safety = safety_context

    def submit(
        self,
        session: Session,
        *,
        device: Device,
        intent: str,
        payload: dict[str, Any],
        requested_by: UUID,
        conversation_id: UUID | None,
        correlation_id: str | None,
    ) -> DeviceCommand:
        command = dispatch.submit(
            session,
            device_id=device.id,
            intent=intent,
            payload=payload,
            requested_by=requested_by,
            conversation_id=conversation_id,
            correlation_id=correlation_id,
            now=self._clock(),
            safety_context=self._safety,
        )
        # A command held for approval is dispatched once approved, not now.
        if command.status is CommandStatus.PENDING and command.safety_event_id is None:
            command_id = command.id

            def defer(_: Session) -> None:
                try:
                    self._jobs.defer_dispatch(command_id)
                except KittyLabError:
                    log.warning("dispatch of %s left to reconciliation", command_id)

            event.listen(session, "after_commit", defer, once=True)
        return command

    def missing(self, session: Session, event_id: UUID) -> list[str]:
        held = workflow.get(session, event_id)
        missing: list[str] = workflow.view(session, held, self._clock(), self._safety.presence_ttl)[
            "missing"
        ]
        return missing


class BusContextPublisher:
    """``ContextPublisher`` on MQTT: the context, retained, on ``kitty/ctx/<id>``, so a
    wall terminal or the CLI can pick up the conversation where it stands."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    def publish(self, conversation_id: UUID, context: dict[str, Any]) -> None:
        self._bus.publish(topics.conversation_context(conversation_id), context, retain=True)


class ConversationCad:
    """``CadStarter`` on the CAD service: ``auto`` policy (online providers when configured
    and reachable, the offline CadQuery pipeline otherwise), the job linked to the
    conversation, the reply from ``runs.progress_reply``."""

    def __init__(self, cad: CadService) -> None:
        self._cad = cad

    def start(
        self, prompt: str, requested_by: UUID, conversation_id: UUID, *, offline: bool
    ) -> str:
        try:
            result = self._cad.generate(
                GenerateRequest(
                    prompt=prompt,
                    # In offline mode no paid online service is asked, as for the tiers.
                    policy_mode=PolicyMode.OFFLINE if offline else PolicyMode.AUTO,
                    requested_by=requested_by,
                    conversation_id=conversation_id,
                )
            )
        except KittyLabError as refusal:
            return f"I can't make that part: {refusal}."
        return progress_reply(result)
