"""What the talk page shows (issue 17, item 3): a person's conversations, and one
conversation's transcript — each message with who said it, where from, when, its text with
its links, the pictures a camera answer points at, and for a reply that sent a device
command, how that command stands (under way, held for approval with its safety event,
done, failed).

Read in short transactions from the stored messages (``conversation.messages``), so the
page shows the same history whichever client spoke: the console, ``kittylab shell``, a
voice turn, another screen."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import (
    ConversationMessage,
    ConversationSession,
    DeviceCommand,
    RoutingDecision,
    SafetyEvent,
    User,
)
from kittylab.conversation import messages
from kittylab.conversation.messages import Message
from kittylab.domain.enums import CommandStatus, SafetyStatus

TRANSCRIPT_LENGTH = 200
"""The newest messages a transcript shows (as ``kittylab shell --continue``)."""
SIDEBAR_LENGTH = 30
TITLE_CHARS = 60

# A link in a message: an absolute http(s) URL, or a path on this server's API or console.
_LINK = re.compile(r"https?://[^\s<>\"']+|(?<![\w/])/(?:api|console)/[^\s<>\"']+")
_TRAILING = ".,;:!?)]}'\""
# A link that is a picture: an image file, or a camera's or a job's snapshot.
_PICTURE = re.compile(r"\.(?:jpe?g|png|gif|webp)$|/snapshots?(?:/|$)", re.IGNORECASE)
# Keys of a message's details that may carry a picture's link (an answer or an outcome).
_PICTURE_KEYS = ("snapshot", "picture", "image", "image_url", "snapshot_url")


@dataclass(frozen=True)
class Segment:
    """A piece of a message's text: plain words, or a link (``href``)."""

    text: str
    href: str | None = None


@dataclass(frozen=True)
class CommandState:
    """How a reply's device command stands, in the API's words plus a sentence."""

    command_id: UUID
    status: str
    """``held`` (waiting for approval), ``expired`` (its approval never came), ``denied``,
    ``pending``, ``sent``, ``acked``, ``failed``."""
    event_id: UUID | None = None

    @property
    def words(self) -> str:
        return {
            "held": "awaiting approval",
            "expired": "approval expired",
            "denied": "denied",
            "pending": "under way",
            "sent": "under way",
            "acked": "done",
            "failed": "failed",
        }[self.status]

    @property
    def settled(self) -> bool:
        return self.status in ("acked", "failed", "denied", "expired")


@dataclass(frozen=True)
class MessageView:
    id: UUID
    kind: str
    """``request``, ``reply`` or ``outcome`` (``conversation.messages``)."""
    segments: tuple[Segment, ...]
    pictures: tuple[str, ...]
    author: str | None
    """Who spoke a request ("you" for the viewer); None for the lab's messages."""
    channel: str | None
    spoken: bool
    """A request that came as speech (``POST /api/voice/turn``): its text is the transcript."""
    created_at: datetime
    request_id: UUID | None
    command: CommandState | None
    """For a reply that sent a device command, and for an outcome (its command's end)."""
    status: str | None
    """An outcome's ``acked`` or ``failed``."""

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)


@dataclass(frozen=True)
class ConversationRow:
    id: UUID
    title: str
    last_message_at: datetime


def segments(text: str) -> tuple[Segment, ...]:
    """``text`` cut into words and links (trailing punctuation stays outside a link)."""
    parts: list[Segment] = []
    at = 0
    for match in _LINK.finditer(text):
        link = match.group(0).rstrip(_TRAILING)
        start, end = match.start(), match.start() + len(link)
        if start > at:
            parts.append(Segment(text[at:start]))
        parts.append(Segment(link, link))
        at = end
    if at < len(text):
        parts.append(Segment(text[at:]))
    return tuple(parts)


def pictures(parts: Sequence[Segment], details: dict[str, Any]) -> tuple[str, ...]:
    """The links of a message that are pictures: those in its text that name an image or
    a snapshot, and any its details carry (a camera's answer, a snapshot's outcome)."""
    found: list[str] = []
    for key in _PICTURE_KEYS:
        value = details.get(key)
        if isinstance(value, str) and _LINK.fullmatch(value):
            found.append(value)
    for part in parts:
        if part.href is not None and _PICTURE.search(part.href.split("?", 1)[0]):
            found.append(part.href)
    return tuple(dict.fromkeys(found))


def title(text: str | None) -> str:
    """A conversation's name in the list: its first request, cut short."""
    if not text:
        return "(nothing said yet)"
    words = " ".join(text.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


def conversations(
    session: Session, user_id: UUID, limit: int = SIDEBAR_LENGTH
) -> list[ConversationRow]:
    """The person's own conversations (those they spoke in or started), newest first."""
    rows = session.execute(
        select(ConversationSession.id, ConversationSession.last_message_at)
        .where(ConversationSession.active_participants.contains([user_id]))
        .order_by(ConversationSession.last_message_at.desc(), ConversationSession.id.desc())
        .limit(limit)
    ).all()
    firsts: dict[UUID, str] = {
        conversation_id: text
        for conversation_id, text in session.execute(
            select(ConversationMessage.conversation_id, ConversationMessage.text)
            .where(
                ConversationMessage.conversation_id.in_([r.id for r in rows]),
                ConversationMessage.kind == messages.REQUEST,
            )
            .order_by(ConversationMessage.conversation_id, ConversationMessage.id)
            .ext(distinct_on(ConversationMessage.conversation_id))
        )
    }
    return [ConversationRow(r.id, title(firsts.get(r.id)), r.last_message_at) for r in rows]


def transcript(
    session: Session,
    conversation_id: UUID,
    viewer_id: UUID,
    now: datetime,
    limit: int = TRANSCRIPT_LENGTH,
) -> list[MessageView]:
    """The conversation's newest ``limit`` messages, oldest first."""
    rows = session.scalars(
        select(ConversationMessage)
        .where(ConversationMessage.conversation_id == conversation_id)
        .order_by(ConversationMessage.id.desc())
        .limit(limit)
    ).all()
    return views(session, [Message.of(r) for r in reversed(rows)], viewer_id, now)


def turn(
    session: Session, conversation_id: UUID, request_id: UUID, viewer_id: UUID, now: datetime
) -> list[MessageView]:
    """One turn's messages (its request and replies, and its commands' outcomes when they
    are already decided), oldest first."""
    rows = session.scalars(
        select(ConversationMessage)
        .where(
            ConversationMessage.conversation_id == conversation_id,
            ConversationMessage.request_id == request_id,
        )
        .order_by(ConversationMessage.id)
    ).all()
    found = [Message.of(r) for r in rows]
    commands = [m.command_id for m in found if m.command_id is not None]
    if commands:
        outcomes = session.scalars(
            select(ConversationMessage)
            .where(
                ConversationMessage.command_id.in_(commands),
                ConversationMessage.kind == messages.OUTCOME,
            )
            .order_by(ConversationMessage.id)
        ).all()
        found += [Message.of(r) for r in outcomes]
    return views(session, found, viewer_id, now)


def views(
    session: Session, found: Sequence[Message], viewer_id: UUID, now: datetime
) -> list[MessageView]:
    """``found`` as the page shows them: authors by name, commands with their state."""
    authors = {m.author_id for m in found if m.author_id is not None}
    names: dict[UUID, str] = (
        {
            user_id: name
            for user_id, name in session.execute(
                select(User.id, User.display_name).where(User.id.in_(authors))
            )
        }
        if authors
        else {}
    )
    command_ids = {m.command_id for m in found if m.command_id is not None}
    states = _command_states(session, command_ids, now) if command_ids else {}
    requests = [m.request_id for m in found if m.kind == messages.REQUEST and m.request_id]
    spoken = (
        set(
            session.scalars(
                select(RoutingDecision.request_id).where(
                    RoutingDecision.request_id.in_(requests),
                    RoutingDecision.details.has_key("voice"),
                )
            )
        )
        if requests
        else set()
    )
    shown: list[MessageView] = []
    for m in found:
        parts = segments(m.text)
        author = None
        if m.kind == messages.REQUEST:
            author = "someone" if m.author_id is None else names.get(m.author_id, "someone")
            if m.author_id == viewer_id:
                author = "you"
        status = m.details.get("status") if m.kind == messages.OUTCOME else None
        shown.append(
            MessageView(
                id=m.id,
                kind=m.kind,
                segments=parts,
                pictures=pictures(parts, m.details),
                author=author,
                channel=m.channel,
                spoken=m.request_id in spoken if m.kind == messages.REQUEST else False,
                created_at=m.created_at,
                request_id=m.request_id,
                command=states.get(m.command_id) if m.command_id is not None else None,
                status=str(status) if status is not None else None,
            )
        )
    return shown


def _command_states(
    session: Session, command_ids: set[UUID], now: datetime
) -> dict[UUID, CommandState]:
    rows = session.execute(
        select(
            DeviceCommand.id,
            DeviceCommand.status,
            DeviceCommand.safety_event_id,
            SafetyEvent.status,
            SafetyEvent.expires_at,
        )
        .outerjoin(SafetyEvent, SafetyEvent.id == DeviceCommand.safety_event_id)
        .where(DeviceCommand.id.in_(command_ids))
    ).all()
    states = {}
    for command_id, status, event_id, event_status, expires_at in rows:
        words = status.value
        if status is CommandStatus.PENDING and event_status is SafetyStatus.PENDING:
            expired = expires_at is not None and expires_at <= now
            words = "expired" if expired else "held"
        elif status is not CommandStatus.ACKED and event_status is SafetyStatus.DENIED:
            words = "denied"
        states[command_id] = CommandState(command_id, words, event_id)
    return states
