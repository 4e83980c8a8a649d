"""The conversation's command path: device requests understood by ``/api/query`` go to
equipment through the same rules and dispatch as ``POST /api/device/{id}/command``, a
zone's or the lab's stop through the stop routes' own use case, and each turn's context is
shared on the bus."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from kittylab.adapters.db.tables import Device
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.cad.errors import CadBudgetExceeded
from kittylab.cad.planning import PolicyMode
from kittylab.cad.runs import CadService, GenerateRequest, progress_reply
from kittylab.devices.requests import Requested, request_command
from kittylab.domain import topics
from kittylab.domain.errors import KittyLabError
from kittylab.domain.principal import Principal
from kittylab.fabrication import print_requests
from kittylab.fabrication.print_requests import PrintQueued
from kittylab.ports import JobQueue, MessageBus
from kittylab.records.ports import ArtifactStore
from kittylab.safety import stop
from kittylab.safety.stop import StopResult
from kittylab.safety.workflow import SafetyContext

log = logging.getLogger(__name__)


class DispatchingSubmitter:
    """``CommandSubmitter`` that sends: ``request_command`` in the turn's unit of work, so
    the dispatch job is deferred (or the held command announced on the bus) once the turn
    commits, exactly as for the command route. A ``print_start`` becomes a print job
    (``fabrication.print_requests``), as on the command route."""

    def __init__(
        self,
        jobs: JobQueue,
        clock: Callable[[], datetime],
        safety_context: SafetyContext,
        bus: MessageBus | None = None,
        *,
        artifacts: ArtifactStore | None = None,
        scenes: Mapping[str, Any] | None = None,
    ) -> None:
        self._jobs = jobs
        self._clock = clock
        self._safety = safety_context
        self._bus = bus
        # Issue 16: where a print said by name finds the person's uploads, and the job
        # profiles (scenes) a print job is checked against.
        self._artifacts = artifacts
        self._scenes = scenes

    def submit(
        self,
        uow: UnitOfWork,
        *,
        device: Device,
        intent: str,
        payload: dict[str, Any],
        requester: Principal,
        conversation_id: UUID | None,
        correlation_id: str | None,
    ) -> Requested | PrintQueued:
        if intent == print_requests.PRINT_INTENT:
            # Issue 16: a print is a job (queued, tracked, watched), never a bare command.
            return print_requests.request_print(
                uow,
                self._artifacts,
                jobs=self._jobs,
                device_id=device.id,
                payload=payload,
                requester=requester,
                now=self._clock(),
                via="conversation",
                correlation_id=correlation_id,
                conversation_id=conversation_id,
                scenes=self._scenes,
            )
        return request_command(
            uow,
            jobs=self._jobs,
            bus=self._bus,
            device_id=device.id,
            intent=intent,
            payload=payload,
            requester=requester,
            conversation_id=conversation_id,
            correlation_id=correlation_id,
            now=self._clock(),
            safety_context=self._safety,
        )


class DispatchingStopper:
    """``LabStopper`` that stops: ``safety.stop.stop`` in the turn's unit of work, so the
    stop's commands are dispatched and the stop announced once the turn commits."""

    def __init__(
        self, jobs: JobQueue, clock: Callable[[], datetime], bus: MessageBus | None = None
    ) -> None:
        self._jobs = jobs
        self._clock = clock
        self._bus = bus

    def stop(self, uow: UnitOfWork, *, requester: Principal, zone_id: UUID | None) -> StopResult:
        return stop.stop(
            uow,
            jobs=self._jobs,
            bus=self._bus,
            requester=requester,
            now=self._clock(),
            zone_id=zone_id,
        )


class BusContextPublisher:
    """``ContextPublisher`` on MQTT: the context, retained, on ``kitty/ctx/<id>``, so a
    wall terminal or the CLI can pick up the conversation where it stands."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    def publish(self, conversation_id: UUID, context: dict[str, Any]) -> None:
        self._bus.publish(topics.conversation_context(conversation_id), context, retain=True)


_OFFLINE_WORDS = re.compile(
    r"[,\s]*\b(?:(?:build|make|do)\s+it\s+)?(?:offline|locally|without\s+(?:zoo|the\s+cloud))\b",
    re.IGNORECASE,
)


class ConversationCad:
    """``CadStarter`` on the CAD service: ``auto`` policy (online providers when configured
    and reachable, the offline CadQuery pipeline otherwise), the job linked to the
    conversation, the reply from ``runs.progress_reply``."""

    def __init__(self, cad: CadService) -> None:
        self._cad = cad

    def start(
        self, prompt: str, requested_by: UUID, conversation_id: UUID, *, offline: bool
    ) -> str:
        # "make a 40 mm washer offline": the person takes up the offline build offered
        # when the online one would pass the budget.
        asked_offline = _OFFLINE_WORDS.search(prompt)
        if asked_offline:
            prompt = _OFFLINE_WORDS.sub(" ", prompt).strip(" ,.")
        try:
            result = self._cad.generate(
                GenerateRequest(
                    prompt=prompt,
                    # In offline mode no paid online service is asked, as for the tiers.
                    policy_mode=(
                        PolicyMode.OFFLINE if offline or asked_offline else PolicyMode.AUTO
                    ),
                    requested_by=requested_by,
                    conversation_id=conversation_id,
                )
            )
        except CadBudgetExceeded as refusal:
            if refusal.offline_offer:
                return (
                    f"I didn't ask {refusal.provider}: {refusal.reason}. I can build it here "
                    f'offline at no cost: say "make {prompt} offline".'
                )
            return (
                f"I didn't ask {refusal.provider}: {refusal.reason}, and the offline part "
                "library cannot make that part."
            )
        except KittyLabError as refusal:
            return f"I can't make that part: {refusal}."
        return progress_reply(result)
