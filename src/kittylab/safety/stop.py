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

The order is part of the contract. A printer's heaters are cooled only once its print is
paused (cooling under a running print grinds filament through a cold nozzle, and the
print's own temperature commands would heat it again), and relays are switched off only
after the pauses (a relay feeding a printer would otherwise kill it mid-move). So the
commands are asked for phase by phase across the zone (every pause, then every cool-down,
then every power-off, then every door lock: ``STOP_INTENTS``), and are not dispatched one
job per command, where workers would send them in any order, but by one job
(``JobQueue.defer_dispatch_in_order`` → ``send_in_order``) that sends each phase once the
one before is confirmed or failed, or ``PHASE_WAIT_SECONDS`` have passed: a printer that
never answers its pause must not keep the lab's relays on. If that job is lost,
``reconcile_commands`` still sends every command (a late stop in any order beats none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand, Zone
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import CommandSettings, NotifySettings
from kittylab.devices import dispatch, telemetry
from kittylab.devices.ports import DeviceDriver
from kittylab.devices.requests import request_command
from kittylab.domain import actuation, topics
from kittylab.domain.command_rules import precondition_refusal
from kittylab.domain.errors import DomainError, NotFound, PermissionDenied
from kittylab.ports import JobQueue, MessageBus
from kittylab.records import audit
from kittylab.safety.lockout import LockClass, lock_class

STOP_INTENTS: tuple[str, ...] = ("print_pause", "printer_cooldown", "power_off", "door_lock")
"""What a stop asks of a device, where its capabilities list the intent: one phase per
intent, in this order, across every device of the zone (see the module doc)."""

PHASE_WAIT_SECONDS = 5.0
"""Longest wait for a phase's confirmations before the next phase is sent anyway."""

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
    devices = [(device, _intents_for(uow, device)) for device in uow.scalars(stmt).all()]
    commands: list[StopCommand] = []
    refusals: list[StopRefusal] = []
    held_back = _OrderedDispatch(jobs)
    for intent, device in ((i, d) for i in STOP_INTENTS for d, asked in devices if i in asked):
        try:
            with uow.begin_nested():
                requested = request_command(
                    uow,
                    jobs=held_back,
                    device_id=device.id,
                    intent=intent,
                    payload={},
                    requester=requester,
                    now=now,
                )
        except (DomainError, PermissionDenied) as exc:
            refusals.append(StopRefusal(device.id, device.external_id, intent, str(exc)))
            continue
        commands.append(StopCommand(device.id, device.external_id, intent, requested.command.id))
    result = StopResult(zone_id, tuple(commands), tuple(refusals))
    if commands:
        uow.after_commit(jobs.defer_dispatch_in_order, [c.command_id for c in commands])
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


class _OrderedDispatch:
    """The caller's ``JobQueue`` with one difference: a command's own dispatch job is not
    deferred, since the stop sends all of its commands in order with one job."""

    def __init__(self, jobs: JobQueue) -> None:
        self._jobs = jobs

    def defer_dispatch(self, command_id: UUID) -> None:
        """Left to ``defer_dispatch_in_order`` (``stop``)."""

    def defer_dispatch_in_order(self, command_ids: Sequence[UUID]) -> None:
        self._jobs.defer_dispatch_in_order(command_ids)

    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None:
        self._jobs.defer_notification(notification_id, delay_seconds=delay_seconds)

    def defer_print_preparation(self, job_id: UUID) -> None:
        self._jobs.defer_print_preparation(job_id)

    def defer_start_next(self, device_id: UUID) -> None:
        self._jobs.defer_start_next(device_id)


def phases(intents: Sequence[tuple[UUID, str]]) -> list[list[UUID]]:
    """``(command id, intent)`` pairs grouped into the phases they are sent in: by the
    rank of their intent in ``STOP_INTENTS`` (any other intent last), each phase in the
    order given."""
    rank = {intent: index for index, intent in enumerate(STOP_INTENTS)}
    grouped: dict[int, list[UUID]] = {}
    for command_id, intent in intents:
        grouped.setdefault(rank.get(intent, len(STOP_INTENTS)), []).append(command_id)
    return [grouped[key] for key in sorted(grouped)]


async def send_in_order(
    database: Database,
    drivers: Mapping[str, DeviceDriver],
    command_ids: Sequence[UUID],
    settings: CommandSettings,
    clock: Callable[[], datetime],
    notify: NotifySettings | None = None,
    phase_wait: float = PHASE_WAIT_SECONDS,
) -> list[dispatch.Outcome]:
    """Dispatch a stop's commands phase by phase (see the module doc); every command of a
    phase is sent at once, and the next phase waits until they are all confirmed or
    failed, or ``phase_wait`` seconds. Returns every command's outcome, in the order of
    ``command_ids`` (commands that no longer exist are left out)."""
    intents = await asyncio.to_thread(_intents_of, database, command_ids)
    running: dict[UUID, asyncio.Task[dispatch.Outcome]] = {}
    for phase in phases([(c, intents[c]) for c in command_ids if c in intents]):
        started = [
            asyncio.create_task(
                dispatch.dispatch(database, drivers, command_id, settings, clock, notify)
            )
            for command_id in phase
        ]
        running.update(zip(phase, started, strict=True))
        await asyncio.wait(started, timeout=phase_wait)
    await asyncio.gather(*running.values(), return_exceptions=True)
    outcomes: list[dispatch.Outcome] = []
    for command_id in command_ids:
        task = running.get(command_id)
        if task is None:
            continue
        error = task.exception()
        outcomes.append(
            dispatch.Outcome(None, f"dispatch raised {type(error).__name__}")
            if error is not None
            else task.result()
        )
    return outcomes


def _intents_of(database: Database, command_ids: Sequence[UUID]) -> dict[UUID, str]:
    with database.unit_of_work() as session:
        rows = session.execute(
            select(DeviceCommand.id, DeviceCommand.intent).where(
                DeviceCommand.id.in_(list(command_ids))
            )
        ).all()
    return {row.id: row.intent for row in rows}


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
