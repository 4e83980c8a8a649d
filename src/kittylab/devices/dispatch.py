"""Device commands from request to confirmation.

``submit`` (in the request's transaction) checks the command against the lab's rules and
the device's last known state and records it ``pending``; ``requests.request_command``
wraps it for every request, registering the ``dispatch`` job on the unit of work for once
it commits (the worker's print start defers it itself, ``worker.tasks``).
``dispatch`` (a background job) claims the command, sends it once through the
integration's driver and waits until the device's own state confirms it:

    pending ──claim──▶ sent ──state confirms──▶ acked
                         └──refused / unreachable / no confirmation in time──▶ failed

Last moment: the claim takes the device's row lock (as placing a lock does) and re-checks
what can change after a command was accepted or approved: the device retired, a lock that
stops the intent, the approval's expiry, and for a held command the device moved to another
zone or a person whose presence the policy asks for no longer present
(``workflow.send_refusal``). A failure there fails the command with its reason (``NotSent``),
tells the requester and, for a held command, is audited as ``safety.not_sent``.

Exactly once: the claim (``pending → sent``) is committed under a row lock *before* the
driver is called, so a job that runs again after a crash or a retry finds ``sent`` and
only waits for confirmation — a command is never sent twice. Never dropped: a pending or
sent command whose job was lost is picked up by ``reconcile`` (a periodic task), and a
sent command that nothing confirms fails with the reason once its time is up.

A command a print monitor's alert sent (a failure's pause, a runaway's cooldown) that ends
``failed`` also records the urgent notification saying so, in the transaction that fails
it (``follow_ups.alert_if_failed``); ``Outcome.notifications`` lists them for
delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from prometheus_client import Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand, FabricationJob, SafetyEvent
from kittylab.config import CommandSettings, NotifySettings, PresenceSettings
from kittylab.devices import commands, telemetry
from kittylab.devices.ports import DeviceDriver, DeviceTarget, DeviceUnavailable, ReportsRefusals
from kittylab.domain.command_rules import (
    SAFE_INTENTS,
    STATE_PRECONDITION_KINDS,
    confirms,
    precondition_refusal,
)
from kittylab.domain.enums import CommandStatus, OnlineState, SafetyStatus
from kittylab.domain.errors import DeviceRefused, NotFound, PermissionDenied
from kittylab.domain.print_queue import FINISHED
from kittylab.monitoring import follow_ups
from kittylab.records import alerts, audit
from kittylab.safety import lockout, locks, policy, workflow

log = logging.getLogger(__name__)

FIRST_RECHECK_SECONDS = 0.01

COMMANDS = Counter("kittylab_device_commands_total", "Device commands by outcome.", ["outcome"])
# Every outcome exists from the start at 0, so a rate or an alert sees the first failure.
for _outcome in ("acked", "failed", "expired", "refused_at_send"):
    COMMANDS.labels(_outcome)
CONFIRM_SECONDS = Histogram(
    "kittylab_device_command_confirm_seconds",
    "From sending a command to the device state confirming it.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


def submit(
    session: Session,
    *,
    device_id: UUID,
    intent: str,
    payload: Mapping[str, Any],
    requested_by: UUID,
    now: datetime,
    correlation_id: str | None = None,
    conversation_id: UUID | None = None,
    safety_context: workflow.SafetyContext | None = None,
) -> DeviceCommand:
    """Record a command the device can take now, hold a hazardous one for approval, or
    refuse it.

    - ``NotFound``: no such device;
    - a hazardous intent (unlock, power on, or one an access policy of the zone lists) is
      recorded ``pending`` with its SafetyEvent and is not sent until approved
      (``safety.workflow``): the returned command has ``safety_event_id`` set. Without a
      ``safety`` context (internal callers) hazardous intents are refused (fail closed);
    - ``PermissionDenied``: the policy denies it outright: the device is locked out and the
      intent adds energy (``safety.lockout``'s table; the safe direction and reads pass);
      the refusal is audited even though the request's transaction rolls back;
    - ``DeviceRefused``: the device is not online, or its last known state forbids the
      intent (pausing a printer that is not printing);
    - the payload and capability rules of ``commands.create_command``.
    A retried request (same ``correlation_id``) returns the first command unchanged.
    """
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("device", device_id)
    if correlation_id is not None:
        # A retry of an accepted request returns it, whatever the device does meanwhile.
        existing = commands.find_retry(session, requested_by, correlation_id)
        if existing is not None:
            return commands.same_request(existing, device.id, intent, payload)
    # Every intent, the safe ones too: a lock refuses whatever adds energy (``light_on``
    # on a locked light), and the policy lets the safe direction and reads through at once.
    decision = workflow.evaluate(session, device, intent, requested_by, now)
    if isinstance(decision, policy.Deny):
        _audit_apart(session, device, intent, requested_by, decision.reason, now)
        raise PermissionDenied(f"{decision.reason}; nothing was sent")
    if isinstance(decision, policy.NeedsApproval) and safety_context is None:
        raise PermissionDenied(
            f"{intent} on {device.display_name} is hazardous and needs a signed safety "
            "approval, which this path cannot ask for; nothing was sent"
        )
    if device.retired_at is None and not _reachable(device.online_state, intent):
        raise DeviceRefused(f"{device.display_name} is {device.online_state.value}")
    if intent == "print_start" and _bed_not_cleared(session, device.id):
        raise DeviceRefused(
            f"the last print on {device.display_name} is still on the bed: confirm the bed "
            "is clear first (POST /api/fabrication/printers/{id}/bed-clear)"
        )
    latest = telemetry.latest_state(session, device.id)
    refusal = precondition_refusal(
        device.kind.value, intent, latest.payload if latest else None, device.display_name
    )
    if refusal is not None:
        raise DeviceRefused(refusal)
    if isinstance(decision, policy.NeedsApproval):
        assert safety_context is not None  # refused above
        return workflow.hold(
            session,
            device=device,
            decision=decision,
            intent=intent,
            payload=dict(payload),
            requested_by=requested_by,
            now=now,
            context=safety_context,
            correlation_id=correlation_id,
            conversation_id=conversation_id,
        )
    return commands.create_command(
        session,
        device=device,
        intent=intent,
        payload=payload,
        requested_by=requested_by,
        conversation_id=conversation_id,
        correlation_id=correlation_id,
        now=now,
        retry_checked=correlation_id is not None,
    )


def _reachable(state: OnlineState, intent: str) -> bool:
    """Online devices take any command; a device in fault still takes the ones that make
    it safer (pause, cancel, power off …): stopping a machine must never be refused."""
    return state is OnlineState.ONLINE or (state is OnlineState.FAULT and intent in SAFE_INTENTS)


def _bed_not_cleared(session: Session, device_id: UUID) -> bool:
    """Whether the printer's last finished job reached the bed and nobody has confirmed the
    bed clear since — whichever way the next print is asked for."""
    last = session.scalar(
        select(FabricationJob)
        .where(
            FabricationJob.device_id == device_id,
            FabricationJob.status.in_(list(FINISHED)),
        )
        .order_by(FabricationJob.completed_at.desc().nulls_last(), FabricationJob.id.desc())
        .limit(1)
    )
    if last is None:
        return False
    reached = last.started_at is not None or "starting_at" in last.details
    return reached and "bed_cleared" not in last.details


def _audit_apart(
    session: Session, device: Device, intent: str, requested_by: UUID, reason: str, now: datetime
) -> None:
    """Record a refused hazardous request in its own transaction: the request's own
    transaction rolls back with the refusal, and the attempt must still be on record."""
    with Session(bind=session.get_bind()) as side, side.begin():
        workflow.record_refusal(side, device, intent, requested_by, reason, now)


DEFAULT_PRESENCE_TTL = timedelta(seconds=PresenceSettings().ttl_seconds)


@dataclass(frozen=True)
class NotSent:
    """The last moment refused the command: it is failed with ``reason``, and its requester
    told (``notifications``, to deliver once committed)."""

    reason: str
    notifications: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class Claim:
    """A command ready to be worked on by ``dispatch``."""

    command_id: UUID
    target: DeviceTarget
    intent: str
    payload: Mapping[str, Any]
    sent_at: datetime
    newly_sent: bool
    """True when this claim moved it to ``sent``: only then may the driver be called."""
    safety_event_id: UUID | None = None
    """The approved safety event this claim carries out (a held command, newly sent)."""


def claim(
    database: Database,
    command_id: UUID,
    now: datetime,
    max_delay: timedelta,
    *,
    presence_ttl: timedelta = DEFAULT_PRESENCE_TTL,
    notify: NotifySettings | None = None,
) -> Claim | NotSent | None:
    """Move a pending command to ``sent`` (committed) and return it; return a ``sent``
    one as is (to be confirmed, not re-sent); ``None`` when it is already decided. A
    pending command older than ``max_delay`` is failed instead: sending it now would
    surprise whoever asked (``None``). One the last moment refuses is failed and its
    requester told (with ``notify``): ``NotSent``."""
    with database.unit_of_work() as session:
        device_id = session.scalar(
            select(DeviceCommand.device_id).where(DeviceCommand.id == command_id)
        )
        if device_id is None:
            return None
        # The device's row first, as ``locks.place`` takes it: a lock is either committed
        # before the check below, or waits until this command is sent.
        device = session.get(Device, device_id, with_for_update=True, populate_existing=True)
        command = session.get(
            DeviceCommand, command_id, with_for_update=True, populate_existing=True
        )
        if command is None or command.status in (CommandStatus.ACKED, CommandStatus.FAILED):
            return None
        assert device is not None  # a foreign key
        newly_sent = command.status is CommandStatus.PENDING
        accepted_at = command.created_at
        event: SafetyEvent | None = None
        if command.safety_event_id is not None and newly_sent:
            event = session.get(
                SafetyEvent, command.safety_event_id, with_for_update=True, populate_existing=True
            )
            approved_at = _approved_at(event)
            if approved_at is None:
                # Not approved (yet, or ever): never sent. A denial has already failed it.
                return None
            # The approval is what the requester waits for: lateness counts from there.
            accepted_at = approved_at
        # A command that makes the lab safer (pause, cancel, power off …) is still worth
        # sending late; anything else would surprise whoever asked a minute ago.
        stale = now - accepted_at > max_delay and command.intent not in SAFE_INTENTS
        if newly_sent and stale:
            commands.advance_command(
                session,
                command_id,
                CommandStatus.FAILED,
                now=now,
                reason=f"not sent within {max_delay.total_seconds():g} s of being accepted "
                "(the service was down or busy); nothing was sent",
            )
            COMMANDS.labels("expired").inc()
            return None
        refusal = (
            _last_moment_refusal(session, device, command.intent, event, now, presence_ttl)
            if newly_sent
            else None  # already sent: only its confirmation is left to wait for
        )
        if refusal is not None:
            commands.advance_command(
                session, command_id, CommandStatus.FAILED, now=now, reason=refusal
            )
            told = _tell_not_sent(session, command, device, event, refusal, notify)
            if event is not None:  # the event keeps its decision, as a record
                event.details = {**event.details, "not_sent": refusal}
                audit.append(
                    session,
                    action="safety.not_sent",
                    actor_id=None,
                    now=now,
                    subject_type="safety_event",
                    subject_id=event.id,
                    details={"command_id": str(command.id), "reason": refusal},
                )
            COMMANDS.labels("refused_at_send").inc()
            return NotSent(refusal, told)
        if newly_sent:
            commands.advance_command(
                session, command_id, CommandStatus.SENT, now=now, locked=command
            )
            sent_at = now
            if event is not None:
                # The data model: an approved event is resolved when it is carried out.
                event.resolved_at = now
        else:
            sent_at = _sent_at(command) or now
        return Claim(
            command_id=command.id,
            target=target_of(device),
            intent=command.intent,
            payload=dict(command.payload),
            sent_at=sent_at,
            newly_sent=newly_sent,
            safety_event_id=event.id if event is not None else None,
        )


def _tell_not_sent(
    session: Session,
    command: DeviceCommand,
    device: Device,
    event: SafetyEvent | None,
    refusal: str,
    notify: NotifySettings | None,
) -> tuple[UUID, ...]:
    if notify is None or command.requested_by is None:
        return ()
    rows = alerts.notify_person(
        session,
        command.requested_by,
        f"Not sent: {command.intent} on {device.display_name}",
        f"Your {command.intent} on {device.display_name} was not sent: {refusal}.",
        notify,
        related_safety_event_id=event.id if event is not None else None,
        idempotency_key=f"not-sent:{command.id}",
    )
    return tuple(row.id for row in rows)


def _last_moment_refusal(
    session: Session,
    device: Device,
    intent: str,
    event: SafetyEvent | None,
    now: datetime,
    presence_ttl: timedelta,
) -> str | None:
    """Why a command must not be sent now after all, whatever was decided when it was
    accepted or approved: the device was retired, a lock went on that stops ``intent``
    (the lockout table), its approval's event expired, or (``workflow.send_refusal``) the
    device moved to another zone or the presence the policy asks for is gone. Read under
    the device's row lock (see ``claim``)."""
    if device.retired_at is not None:
        return (
            f"{device.display_name} was retired at {lockout.when_text(device.retired_at)}; "
            "nothing was sent"
        )
    refusal = lockout.lock_refusal(intent, locks.active_locks(session, device.id))
    if refusal is not None:
        return f"{refusal}; nothing was sent"
    if event is not None and event.expires_at is not None and now >= event.expires_at:
        return (
            f"its approval expired at {lockout.when_text(event.expires_at)} before it could "
            "be sent; nothing was sent, ask again"
        )
    if event is not None:
        return workflow.send_refusal(session, event, device, now, presence_ttl)
    return None


def _approved_at(event: SafetyEvent | None) -> datetime | None:
    """When ``event`` was approved; ``None`` unless it is approved (fail closed)."""
    if event is None or event.status is not SafetyStatus.APPROVED:
        return None
    stamp = event.details.get("approved_at")
    return datetime.fromisoformat(stamp) if isinstance(stamp, str) else event.created_at


def target_of(device: Device) -> DeviceTarget:
    """What a driver needs to know of ``device``: a detached, read-only copy."""
    return DeviceTarget(
        id=device.id,
        external_id=device.external_id,
        kind=device.kind,
        integration=device.integration,
        connection=dict(device.connection),
        attributes=dict(device.attributes),
    )


def _sent_at(command: DeviceCommand) -> datetime | None:
    for entry in reversed(command.status_history):
        if entry.get("status") == CommandStatus.SENT.value:
            return datetime.fromisoformat(entry["at"])
    return None


def _finish(
    database: Database,
    command_id: UUID,
    target: CommandStatus,
    now: datetime,
    reason: str | None,
    notify: NotifySettings | None = None,
    observed: Mapping[str, Any] | None = None,
    keep_observed: bool = False,
) -> list[UUID]:
    """Decide a sent command, unless another job (a recovery retry running alongside)
    already did: the first decision stands. Returns the notifications recorded with a
    failure (see the module doc), to deliver once committed.

    ``observed``: the device's state that confirmed it, which its outcome is told from.
    With ``keep_observed`` (a device whose state can forbid its next command: a printer)
    it is stored with the decision unless the stored state is that one already (the
    telemetry ingest writes bus states in batches, a poller at its interval), so that the
    next command's precondition is checked against the state that confirmed this one."""
    with database.unit_of_work() as session:
        current = session.scalar(
            select(DeviceCommand.status).where(DeviceCommand.id == command_id).with_for_update()
        )
        if current is not CommandStatus.SENT:
            return []
        command = commands.advance_command(
            session, command_id, target, now=now, reason=reason, observed=observed
        )
        if observed is not None and keep_observed:
            _store_observed(session, command.device_id, observed, now)
        alerted = follow_ups.alert_if_failed(session, command, notify) if notify is not None else []
    COMMANDS.labels(target.value).inc()
    return alerted


def _store_observed(
    session: Session, device_id: UUID, observed: Mapping[str, Any], now: datetime
) -> None:
    latest = telemetry.latest_state(session, device_id)
    if latest is not None and latest.payload == observed:
        return
    event = telemetry.IncomingEvent(device_id, None, telemetry.STATE_TOPIC, dict(observed), now)
    result = telemetry.store_stream(session, [event], now)
    if result.refusals:  # the driver checked it; should it still not store, the ack stands
        log.warning("the confirming state was not stored: %s", result.refusals[0])


@dataclass(frozen=True)
class Outcome:
    status: CommandStatus | None
    reason: str | None = None
    notifications: tuple[UUID, ...] = ()
    """Recorded because the command failed (a monitor's pause that did not happen):
    the caller defers their delivery."""
    sent_safety_event: UUID | None = None
    """This run sent the held command of that approved safety event: the caller defers
    its camera bookmark (``safety.evidence``), after the send, never before it."""


async def dispatch(
    database: Database,
    drivers: Mapping[str, DeviceDriver],
    command_id: UUID,
    settings: CommandSettings,
    clock: Callable[[], datetime],
    notify: NotifySettings | None = None,
    presence_ttl: timedelta = DEFAULT_PRESENCE_TTL,
) -> Outcome:
    """Send a command (once) and wait for the device to confirm it; see the module doc.
    ``notify`` is where alerts about a failed monitor pause, and the requester's notice of
    a command the last moment refused, go; the background task always passes it (only
    tests and benchmarks that raise no alerts leave it out). ``presence_ttl``: how long a
    presence observation counts (``presence.ttl_seconds``)."""
    max_delay = timedelta(seconds=settings.max_dispatch_delay_seconds)
    work = await asyncio.to_thread(
        partial(claim, presence_ttl=presence_ttl, notify=notify),
        database,
        command_id,
        clock(),
        max_delay,
    )
    if work is None:
        return Outcome(None, "already decided")
    if isinstance(work, NotSent):
        return Outcome(None, work.reason, work.notifications)
    driver = drivers.get(work.target.integration)

    async def fail(reason: str) -> Outcome:
        log.warning("device command %s failed: %s", command_id, reason)
        alerted = await asyncio.to_thread(
            _finish, database, command_id, CommandStatus.FAILED, clock(), reason, notify
        )
        return Outcome(CommandStatus.FAILED, reason, tuple(alerted))

    if driver is None:
        return await fail(f"no driver is configured for integration {work.target.integration}")
    before: dict[str, Any] | None = None
    if work.newly_sent:
        try:
            before = await driver.state(work.target)
        except (DeviceUnavailable, DeviceRefused):
            before = None  # the send below decides whether the device is there
        try:
            receipt = await driver.send(work.target, work.intent, work.payload)
        except (DeviceRefused, DeviceUnavailable) as exc:
            # Sent or not, the device may have acted: a held command's moment is bookmarked.
            return replace(await fail(str(exc)), sent_safety_event=work.safety_event_id)
        # The device's time to answer starts once the message has left: reading the state
        # before sending may itself wait (a device not heard from yet), and that wait must
        # not eat into the device's share.
        window_opens = max(work.sent_at, clock())
    else:
        receipt = None  # sent by an earlier run: only the device's state can tell now
        window_opens = work.sent_at
    outcome = await _await_confirmation(
        driver, work, before, receipt, window_opens, settings, clock, fail, database
    )
    return replace(outcome, sent_safety_event=work.safety_event_id)


async def _await_confirmation(
    driver: DeviceDriver,
    work: Claim,
    before: Mapping[str, Any] | None,
    receipt: str | None,
    window_opens: datetime,
    settings: CommandSettings,
    clock: Callable[[], datetime],
    fail: Callable[[str], Any],
    database: Database,
) -> Outcome:
    deadline = window_opens + timedelta(seconds=settings.ack_timeout_seconds)
    started = time.monotonic()
    last_seen: str = "no state was read"
    # Most devices answer within milliseconds: look again soon, then back off to the
    # configured interval, so a fast device is acked fast and a slow one is not hammered.
    pause = FIRST_RECHECK_SECONDS
    while True:
        refused = (
            driver.refusal(work.target, receipt)
            if receipt is not None and isinstance(driver, ReportsRefusals)
            else None
        )
        if refused is not None:
            outcome: Outcome = await fail(refused)
            return outcome
        try:
            state = await driver.state(work.target)
        except DeviceRefused as refusal:
            outcome = await fail(str(refusal))
            return outcome
        except DeviceUnavailable as exc:
            last_seen = f"the device could not be read ({exc})"
        else:
            if confirms(work.intent, work.payload, before, state):
                await asyncio.to_thread(
                    partial(
                        _finish,
                        observed=state,
                        keep_observed=work.target.kind.value in STATE_PRECONDITION_KINDS,
                    ),
                    database,
                    work.command_id,
                    CommandStatus.ACKED,
                    clock(),
                    None,
                )
                CONFIRM_SECONDS.observe(time.monotonic() - started)
                return Outcome(CommandStatus.ACKED)
            last_seen = f"the device reports {_brief(state)}"
        if clock() >= deadline:
            outcome = await fail(
                f"not confirmed within {settings.ack_timeout_seconds:g} s; {last_seen}"
            )
            return outcome
        await asyncio.sleep(min(pause, settings.poll_interval_seconds))
        pause *= 2


def _brief(state: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in state.items() if not isinstance(v, Mapping))
    return text[:300] or "an empty state"


def unfinished(database: Database, older_than: datetime, limit: int = 500) -> list[UUID]:
    """Pending or sent commands created before ``older_than``: those a lost job (a crash
    between commit and defer, a queue outage) would otherwise leave waiting forever.
    Commands still waiting for their safety approval are not among them."""
    with database.unit_of_work() as session:
        return list(
            session.scalars(
                select(DeviceCommand.id)
                .outerjoin(SafetyEvent, SafetyEvent.id == DeviceCommand.safety_event_id)
                .where(
                    DeviceCommand.status.in_([CommandStatus.PENDING, CommandStatus.SENT]),
                    DeviceCommand.created_at < older_than,
                    # Commands waiting for approval are the safety workflow's to release.
                    (DeviceCommand.safety_event_id.is_(None))
                    | (SafetyEvent.status == SafetyStatus.APPROVED),
                )
                .order_by(DeviceCommand.id)
                .limit(limit)
            )
        )
