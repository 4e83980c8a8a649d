"""Device commands on the write path: created against the device's capabilities, made
idempotent by correlation id, and moved only along ``pending → sent → acked|failed``.

Every status a command takes is appended to its ``status_history`` with the time, so the
audit shows the whole path, not only where it ended. Hazard approval (a command waiting in
``pending`` for its safety event) is decided by the safety services, not here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import ConversationSession, Device, DeviceCommand
from kittylab.conversation import messages
from kittylab.domain.command_rules import has_temperatures, limit_refusal
from kittylab.domain.devices import validate_command
from kittylab.domain.enums import CommandStatus
from kittylab.domain.errors import Conflict, DeviceRefused, NotFound, ValidationFailed
from kittylab.domain.gcode_policy import policy_from_attributes
from kittylab.domain.sanitize import sanitize_text
from kittylab.domain.state_machines import COMMAND_TRANSITIONS, transition

logger = logging.getLogger(__name__)

_CORRELATION_MAX = 128  # the column's length
_REASON_MAX = 2000


def create_command(
    session: Session,
    *,
    device: Device,
    intent: str,
    payload: Mapping[str, Any],
    requested_by: UUID,
    conversation_id: UUID | None = None,
    correlation_id: str | None = None,
    now: datetime,
    retry_checked: bool = False,
) -> DeviceCommand:
    """Record a ``pending`` command for ``device`` and return it, flushed.

    The intent must be one of the device's capabilities and the payload must match that
    intent's schema (``ValidationFailed`` naming ``intent`` or ``payload.<path>``); a retired
    device refuses commands (``Conflict``). A request repeated with the same
    ``(requested_by, correlation_id)`` returns the command the first one created, even when
    two arrive at once; reusing the id for a different device, intent or payload raises
    ``Conflict`` naming ``correlationId``. An unknown ``conversation_id`` is ``NotFound``.
    ``retry_checked``: the caller has just looked for that earlier command in this
    transaction (``find_retry``); a concurrent twin is still caught by the insert.
    """
    correlation = _clean_correlation_id(correlation_id)
    if correlation is not None and not retry_checked:
        existing = find_retry(session, requested_by, correlation)
        if existing is not None:
            return same_request(existing, device.id, intent, payload)
    _check_device_accepts(device, intent, payload)
    if conversation_id is not None and session.get(ConversationSession, conversation_id) is None:
        raise NotFound("conversation", conversation_id)
    command = DeviceCommand(
        device_id=device.id,
        conversation_id=conversation_id,
        intent=intent,
        payload=dict(payload),
        requested_by=requested_by,
        correlation_id=correlation,
        status=CommandStatus.PENDING,
        status_history=[_history_entry(CommandStatus.PENDING, now)],
        created_at=now,
    )
    return _insert_once(session, command)


def advance_command(
    session: Session,
    command_id: UUID,
    target: CommandStatus,
    *,
    now: datetime,
    reason: str | None = None,
    locked: DeviceCommand | None = None,
    observed: Mapping[str, Any] | None = None,
) -> DeviceCommand:
    """Move a command to ``target`` under a row lock and return it. ``locked``: the
    command as the caller already read it ``FOR UPDATE`` in this transaction (the claim
    does), so it is not read a second time. ``observed``: the device's state that
    confirmed it, which the outcome message is told from (the stored state may trail it).

    Raises ``NotFound`` for an unknown id and ``InvalidTransition`` (naming the current and
    the attempted state) for a move the transition table forbids. Reaching ``acked`` stamps
    ``ack_at``; reaching ``failed`` stores ``reason``, sanitized, as ``failure_reason``.
    The history entry carries the sanitized reason when one is given. A command of a
    conversation that is decided also writes its outcome message
    (``conversation.messages.record_outcome``).
    """
    command = locked if locked is not None else _get_for_update(session, command_id)
    previous = command.status
    command.status = transition("device command", COMMAND_TRANSITIONS, previous, target)
    clean_reason = None if reason is None else sanitize_text(reason, _REASON_MAX)
    # A new list, not an in-place append: JSONB columns do not track mutation.
    command.status_history = [
        *command.status_history,
        _history_entry(target, now, clean_reason),
    ]
    if target is CommandStatus.ACKED:
        command.ack_at = now
    elif target is CommandStatus.FAILED:
        command.failure_reason = clean_reason
    session.flush()
    # Issue 16: the outcome is told to the command's conversation in this same transaction,
    # so a decided command never lacks its message, whatever crashes next.
    messages.record_outcome(session, command, now, observed)
    logger.info("device command %s: %s -> %s", command.id, previous.value, target.value)
    return command


def _clean_correlation_id(value: str | None) -> str | None:
    if value is None:
        return None
    clean = value.strip()
    if not clean or len(clean) > _CORRELATION_MAX:
        raise ValidationFailed(
            "correlation_id", f"must be 1-{_CORRELATION_MAX} characters when given"
        )
    return clean


def find_retry(session: Session, requested_by: UUID, correlation_id: str) -> DeviceCommand | None:
    """The command ``requested_by`` already created under ``correlation_id``, if any."""
    return session.scalar(
        select(DeviceCommand).where(
            DeviceCommand.requested_by == requested_by,
            DeviceCommand.correlation_id == correlation_id,
        )
    )


def same_request(
    existing: DeviceCommand, device_id: UUID, intent: str, payload: Mapping[str, Any]
) -> DeviceCommand:
    """Return ``existing`` when it is the command this request describes; a different
    request under the same correlation id is a client bug, refused rather than guessed."""
    if (existing.device_id, existing.intent, existing.payload) != (
        device_id,
        intent,
        dict(payload),
    ):
        raise Conflict(
            f"correlationId {existing.correlation_id} was already used for a different "
            f"command ({existing.id})",
            field="correlationId",
        )
    return existing


def _check_device_accepts(device: Device, intent: str, payload: Mapping[str, Any]) -> None:
    if device.retired_at is not None:
        raise Conflict(
            f"device {device.external_id} is retired and accepts no commands", field="deviceId"
        )
    validate_command(device.capabilities, intent, payload)
    if has_temperatures(payload):
        _check_limits(device, payload)


def _check_limits(device: Device, payload: Mapping[str, Any]) -> None:
    """A temperature above the printer's declared limit is refused (422 naming the field);
    a policy that cannot be read refuses every temperature (fail closed)."""
    try:
        policy = policy_from_attributes(device.attributes)
    except ValidationFailed as exc:
        raise DeviceRefused(
            f"{device.display_name}'s G-code policy cannot be read ({exc}); fix its manifest entry"
        ) from None
    refusal = limit_refusal(device.kind.value, payload, policy, device.display_name)
    if refusal is not None:
        raise ValidationFailed(*refusal)


def _insert_once(session: Session, command: DeviceCommand) -> DeviceCommand:
    """Insert ``command``; when a concurrent request with the same correlation id won the
    race, return (or refuse against) the winner's row instead of failing the transaction.

    One statement either way (issue 14): ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on
    the ``(requested_by, correlation_id)`` constraint instead of a savepoint around a
    plain insert, which took three round trips for every command."""
    if command.correlation_id is None:  # nothing it could conflict with
        session.add(command)
        session.flush()
        return command
    session.flush()  # earlier pending work must not be mistaken for this insert's conflict
    values = {
        column.key: getattr(command, column.key)
        for column in DeviceCommand.__mapper__.column_attrs
        if getattr(command, column.key) is not None
    }
    inserted = session.scalars(
        pg_insert(DeviceCommand)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["requested_by", "correlation_id"])
        .returning(DeviceCommand)
    ).first()
    if inserted is not None:
        return inserted
    winner = find_retry(session, command.requested_by, command.correlation_id)
    if winner is None:  # the winner was rolled back meanwhile: not a conflict after all
        raise Conflict(
            f"correlationId {command.correlation_id} is being used by another request; try again",
            field="correlationId",
        )
    return same_request(winner, command.device_id, command.intent, command.payload)


def _get_for_update(session: Session, command_id: UUID) -> DeviceCommand:
    command = session.get(DeviceCommand, command_id, with_for_update=True, populate_existing=True)
    if command is None:
        raise NotFound("device command", command_id)
    return command


def _history_entry(
    status: CommandStatus, at: datetime, reason: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": status.value, "at": at.isoformat()}
    if reason is not None:
        entry["reason"] = reason
    return entry
