"""A conversation's messages as they happen (issue 16): what ``GET /api/conversations/
{id}/events`` streams to every client following the conversation — each turn's words and
replies, whoever spoke, and the later outcome of its device commands.

The stream reads the messages table (``messages.since``), so an outcome decided by a worker
in another process reaches it as well. Ids are time-ordered but minted before the commit,
so a message may become visible slightly after a later-minted one: each look goes back
``LOOKBACK`` behind the newest message seen and skips ids already pushed, so none is
missed or pushed twice. The stream ends when the conversation is deleted or after
``max_seconds`` (the client reconnects with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from datetime import datetime, timedelta
from uuid import UUID

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import ConversationMessage, ConversationSession
from kittylab.conversation import messages
from kittylab.conversation.messages import Message

LOOKBACK = timedelta(seconds=10)
KEEPALIVE_SECONDS = 15.0


async def follow(
    database: Database,
    conversation_id: UUID,
    *,
    last_event_id: UUID | None,
    clock: Callable[[], datetime],
    poll_seconds: float,
    max_seconds: float,
    monotonic: Callable[[], float],
) -> AsyncGenerator[list[Message], None]:
    """Yield the conversation's new messages, oldest first, as they appear: those after
    ``last_event_id`` (a message id) when given, else those from now on. An empty list
    now and then keeps the connection alive; the iteration ends when the conversation is
    gone or ``max_seconds`` have passed."""
    start = await asyncio.to_thread(_start, database, last_event_id, clock)
    watermark = start
    pushed: dict[UUID, datetime] = {}
    ends = monotonic() + max_seconds
    quiet_since = monotonic()
    while monotonic() < ends:
        found = await asyncio.to_thread(_look, database, conversation_id, watermark - LOOKBACK)
        if found is None:
            return
        fresh = [
            m
            for m in found
            if m.id not in pushed
            and (last_event_id is None or m.id > last_event_id)
            and m.created_at >= start
        ]
        for message in fresh:
            pushed[message.id] = message.created_at
            watermark = max(watermark, message.created_at)
        # Forget what the look-back window no longer reaches.
        for old in [i for i, at in pushed.items() if at < watermark - 2 * LOOKBACK]:
            del pushed[old]
        if fresh or monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = monotonic()
            yield fresh
        await asyncio.sleep(poll_seconds)


def _start(
    database: Database, last_event_id: UUID | None, clock: Callable[[], datetime]
) -> datetime:
    """Where the stream starts: the resumed-after message's time, or now."""
    if last_event_id is None:
        return clock()
    with database.unit_of_work() as session:
        row = session.get(ConversationMessage, last_event_id)
        return row.created_at if row is not None else clock() - LOOKBACK


def _look(database: Database, conversation_id: UUID, after: datetime) -> list[Message] | None:
    with database.unit_of_work() as session:
        if session.get(ConversationSession, conversation_id) is None:
            return None
        return messages.since(session, conversation_id, after)
