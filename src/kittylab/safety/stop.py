"""Stop: put every device of a zone, or of the whole lab, in its safe state at once.

For each device the stop asks, through ``devices.requests.request_command`` (the one gate),
for the safe-direction intents it can take (``STOP_INTENTS``, each in the lockout table's
*safe direction* class): pause a print in progress, cool the heaters, power relays off,
lock doors. Lights stay as they are: seeing the room is safer. Nothing is held for
approval (no safety context: a hazardous intent would be refused, never held), and a lock
never stops the safe direction.

Each device's requests run in a savepoint: a device that refuses (offline, a policy, a
state) is listed in the result and never stops the others. The stop is audited once
(``stop.requested``: who, which zone, what was asked and what was refused) and announced on
``kitty/zones/<id>/stop`` or ``kitty/lab/stop`` once the unit of work commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.tables import Device, Zone
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.devices import telemetry
from kittylab.devices.requests import request_command
from kittylab.domain import actuation, topics
from kittylab.domain.command_rules import precondition_refusal
from kittylab.domain.errors import DomainError, NotFound, PermissionDenied
from kittylab.ports import JobQueue, MessageBus
from kittylab.records import audit
from kittylab.safety.lockout import LockClass, lock_class

STOP_INTENTS: tuple[str, ...] = ("print_pause", "printer_cooldown", "power_off", "door_lock")
"""What a stop asks of a device, in this order, where its capabilities list the intent."""

# A stop must only ever take energy out: fail at import if the table disagrees.
assert all(lock_class(i) is LockClass.SAFE_DIRECTION for i in STOP_INTENTS)


@dataclass(frozen=True)
class StopCommand:
    device_id: UUID
    device_name: str
    intent: str
    command_id: UUID


@dataclass(frozen=True)
class StopRefusal:
    device_id: UUID
    device_name: str
    intent: str
    reason: str


@dataclass(frozen=True)
class StopResult:
    zone_id: UUID | None
    """None: the whole lab."""
    commands: tuple[StopCommand, ...]
    refusals: tuple[StopRefusal, ...]


def stop(
    uow: UnitOfWork,
    *,
    jobs: JobQueue,
    bus: MessageBus | None,
    requester: actuation.Requester,
    now: datetime,
    zone_id: UUID | None = None,
) -> StopResult:
    """Ask every active device of ``zone_id`` (None: every zone) for its safe state.

    ``NotFound`` for an unknown zone; ``PermissionDenied`` when the role table does not let
    ``requester`` ask for the safe direction (an engineer), before anything is recorded.
    Commands are sent once ``uow`` commits."""
    if zone_id is not None and uow.get(Zone, zone_id) is None:
        raise NotFound("zone", zone_id)
    # A stop is no one's print job: only the roles that switch equipment may ask for it.
    actuation.authorise(requester, "power_off", owns_job_on_device=False)
    stmt = select(Device).where(Device.retired_at.is_(None)).order_by(Device.external_id)
    if zone_id is not None:
        stmt = stmt.where(Device.zone_id == zone_id)
    commands: list[StopCommand] = []
    refusals: list[StopRefusal] = []
    for device in uow.scalars(stmt).all():
        for intent in _intents_for(uow, device):
            try:
                with uow.begin_nested():
                    requested = request_command(
                        uow,
                        jobs=jobs,
                        device_id=device.id,
                        intent=intent,
                        payload={},
                        requester=requester,
                        now=now,
                    )
            except (DomainError, PermissionDenied) as exc:
                refusals.append(StopRefusal(device.id, device.external_id, intent, str(exc)))
                continue
            commands.append(
                StopCommand(device.id, device.external_id, intent, requested.command.id)
            )
    result = StopResult(zone_id, tuple(commands), tuple(refusals))
    audit.append(
        uow,
        action="stop.requested",
        actor_id=actuation.requester_id(requester),
        now=now,
        subject_type="zone" if zone_id is not None else "lab",
        subject_id=zone_id,
        details=_details(result),
    )
    if bus is not None:
        topic = topics.zone_stop(zone_id) if zone_id is not None else topics.LAB_STOP
        uow.after_commit(bus.publish, topic, {**_details(result), "at": now.isoformat()})
    return result


def _intents_for(uow: UnitOfWork, device: Device) -> list[str]:
    """The stop intents ``device`` can take. A pause only when its last state says a print
    is running: an idle printer has nothing to pause, and that is no refusal."""
    intents = [i for i in STOP_INTENTS if i in device.capabilities]
    if "print_pause" in intents:
        latest = telemetry.latest_state(uow, device.id)
        state = latest.payload if latest else None
        if precondition_refusal(device.kind.value, "print_pause", state, device.external_id):
            intents.remove("print_pause")
    return intents


def _details(result: StopResult) -> dict[str, Any]:
    return {
        "zoneId": str(result.zone_id) if result.zone_id else None,
        "commands": [
            {"device": c.device_name, "intent": c.intent, "commandId": str(c.command_id)}
            for c in result.commands
        ],
        "refusals": [
            {"device": r.device_name, "intent": r.intent, "reason": r.reason}
            for r in result.refusals
        ],
    }
