"""A conversation's memory (issue 16): what each turn said, and what became of its device
commands.

Three kinds of message, in the order they happened (ids are time-ordered):

- ``request``: the person's words, with the channel they came through;
- ``reply``: each of the lab's replies to that turn, as it gave them;
- ``outcome``: a device command of the conversation, once decided (``acked`` or
  ``failed``): its result in words (``domain.command_outcome``).

Crash safety: a turn's request and replies are written in the transaction that records its
routing decision (``record_turn``); a command's outcome in the transaction that decides the
command (``record_outcome``, called by ``devices.commands.advance_command``), at most once
per command (a partial unique index). Nothing is written after a commit, so no crash can
leave a decided command without its message.

Texts are stored through ``domain.sanitize.sanitize_text``: secret-looking substrings (API
tokens, provider keys, bearer headers, private keys, passwords in URLs) are redacted before
they reach the table. Messages older than ``conversations.message_retention_days`` are
purged (``purge_old_messages``), and all of a conversation's go with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import ConversationMessage, Device, DeviceCommand
from kittylab.devices import telemetry
from kittylab.domain import command_outcome
from kittylab.domain.clock import uuid7
from kittylab.domain.enums import CommandStatus
from kittylab.domain.sanitize import sanitize_text

log = logging.getLogger(__name__)

REQUEST = "request"
REPLY = "reply"
OUTCOME = "outcome"

MAX_MESSAGE_CHARS = 20_000
"""A reply (a frontier model's answer) may be long; anything longer is cut, marked '…'."""


@dataclass(frozen=True)
class Message:
    """One stored message, detached from its session."""

    id: UUID
    conversation_id: UUID
    kind: str
    text: str
    author_id: UUID | None
    channel: str | None
    request_id: UUID | None
    command_id: UUID | None
    details: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: ConversationMessage) -> Message:
        return cls(
            id=row.id,
            conversation_id=row.conversation_id,
            kind=row.kind,
            text=row.text,
            author_id=row.author_id,
            channel=row.channel,
            request_id=row.request_id,
            command_id=row.command_id,
            details=dict(row.details),
            created_at=row.created_at,
        )


def clean(text: str) -> str:
    return sanitize_text(text, MAX_MESSAGE_CHARS)


def record_turn(
    session: Session,
    *,
    conversation_id: UUID,
    author_id: UUID,
    channel: str,
    request_id: UUID,
    text: str,
    replies: Sequence[str],
    command_id: UUID | None,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Write a turn's request and replies in the caller's transaction (the one recording
    the turn's decision). ``details``: what the reply was about (outcome, intent, device,
    tier), kept with the first reply."""
    session.add(
        ConversationMessage(
            id=uuid7(),
            conversation_id=conversation_id,
            kind=REQUEST,
            text=clean(text),
            author_id=author_id,
            channel=channel,
            request_id=request_id,
            created_at=now,
        )
    )
    for index, reply in enumerate(replies):
        session.add(
            ConversationMessage(
                id=uuid7(),
                conversation_id=conversation_id,
                kind=REPLY,
                text=clean(reply),
                channel=channel,
                request_id=request_id,
                command_id=command_id,
                details=dict(details or {}) if index == 0 else {},
                created_at=now,
            )
        )
    session.flush()


def record_outcome(
    session: Session,
    command: DeviceCommand,
    now: datetime,
    observed: Mapping[str, Any] | None = None,
) -> None:
    """Write the outcome of ``command``, just decided in the caller's transaction, to its
    conversation (none: nothing to do). A second call for the same command writes nothing.
    ``observed``: the state that confirmed it, else the newest stored one is told from."""
    if command.conversation_id is None or command.status not in (
        CommandStatus.ACKED,
        CommandStatus.FAILED,
    ):
        return
    device = session.get(Device, command.device_id)
    name = device.display_name if device is not None else "the device"
    details: dict[str, Any] = {"status": command.status.value, "intent": command.intent}
    if command.status is CommandStatus.ACKED:
        state: Mapping[str, Any] | None = observed
        if state is None:
            latest = telemetry.latest_state(session, command.device_id)
            stored = latest.payload if latest is not None else None
            state = stored if isinstance(stored, dict) else None
        text = command_outcome.confirmed(command.intent, name, command.payload, state)
    else:
        text = command_outcome.failed(command.intent, name, command.payload, command.failure_reason)
        details["reason"] = command.failure_reason
    session.execute(
        insert(ConversationMessage)
        .values(
            id=uuid7(),
            conversation_id=command.conversation_id,
            kind=OUTCOME,
            text=clean(text),
            command_id=command.id,
            details=details,
            created_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=[ConversationMessage.command_id],
            index_where=ConversationMessage.kind == OUTCOME,
        )
    )


def outcome_of(session: Session, command_id: UUID) -> Message | None:
    row = session.scalar(
        select(ConversationMessage).where(
            ConversationMessage.command_id == command_id, ConversationMessage.kind == OUTCOME
        )
    )
    return Message.of(row) if row is not None else None


def since(
    session: Session, conversation_id: UUID, after: datetime | None, limit: int = 200
) -> list[Message]:
    """The conversation's messages created at or after ``after`` (all, with ``None``),
    oldest first: what an events stream has not pushed yet (it drops those it has)."""
    stmt = select(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id)
    if after is not None:
        stmt = stmt.where(ConversationMessage.created_at >= after)
    rows = session.scalars(stmt.order_by(ConversationMessage.id).limit(limit))
    return [Message.of(row) for row in rows]


def purge_old_messages(
    database: Database, now: datetime, retention: timedelta, *, batch_size: int = 5000
) -> int:
    """Delete messages created before ``now - retention``, in batches (short transactions,
    as telemetry's purge); return how many went."""
    cutoff = now - retention
    total = 0
    while True:
        with database.unit_of_work() as session:
            # Rows another transaction holds are skipped: the next run takes them.
            batch = (
                select(ConversationMessage.id)
                .where(ConversationMessage.created_at < cutoff)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
            removed = session.scalars(
                delete(ConversationMessage)
                .where(ConversationMessage.id.in_(batch.scalar_subquery()))
                .returning(ConversationMessage.id)
                .execution_options(synchronize_session=False)
            ).all()
        total += len(removed)
        if len(removed) < batch_size:
            break
    if total:
        log.info("purged %d conversation messages past their retention", total)
    return total
