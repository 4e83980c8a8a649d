"""``/api/conversations``: conversation sessions (their routing decisions: ``/api/routing``),
their messages (issue 16: ``/messages``, the stored history) and their events (``/events``,
the same messages pushed as Server-Sent Events while they happen).

Who may read a conversation's messages: its participants (whoever has spoken in it, or
created it), and the safety and admin roles, who read every audit-relevant record. Anyone
else gets 403, and the conversation's existence is the only thing a 404 tells apart."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from kittylab.adapters.db.tables import ConversationMessage, ConversationSession
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import CamelModel, ConversationCreate, ConversationOut
from kittylab.bootstrap import Container
from kittylab.conversation import events
from kittylab.conversation.messages import Message
from kittylab.domain.enums import Role
from kittylab.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from kittylab.domain.principal import Principal

router = APIRouter(prefix="/api", tags=["conversations"])

MessageKind = Annotated[str | None, Query(pattern="^(request|reply|outcome)$")]


class MessageOut(CamelModel):
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


def _readable(row: ConversationSession | None, caller: Principal, conversation_id: UUID) -> None:
    if row is None:
        raise NotFound("conversation", conversation_id)
    if not caller.reads_all_records and caller.user_id not in row.active_participants:
        raise PermissionDenied("only the conversation's participants can read it")


@router.get("/conversations", response_model=Page[ConversationOut])
def list_conversations(
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    context_key: Annotated[str | None, Query(alias="contextKey", max_length=200)] = None,
) -> Page[ConversationOut]:
    stmt = where_equal(select(ConversationSession), (ConversationSession.context_key, context_key))
    if not caller.reads_all_records:
        stmt = stmt.where(ConversationSession.active_participants.contains([caller.user_id]))
    return paginate(
        uow, stmt, ConversationSession.id, cursor, limit, ConversationOut.model_validate
    )


@router.post("/conversations", response_model=ConversationOut, status_code=status.HTTP_201_CREATED)
def create_conversation(
    body: ConversationCreate,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> ConversationSession:
    key = body.context_key or f"conv-{secrets.token_hex(8)}"
    if uow.scalar(select(ConversationSession.id).where(ConversationSession.context_key == key)):
        raise Conflict(f"a conversation with context key {key} exists", field="contextKey")
    row = ConversationSession(
        context_key=key, active_participants=[caller.user_id], last_message_at=c.clock()
    )
    uow.add(row)
    uow.flush()
    return row


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
def get_conversation(conversation_id: UUID, caller: Caller, uow: UnitOfWork) -> ConversationSession:
    """A conversation, for its participants and the safety and admin roles."""
    row = get_or_404(uow, ConversationSession, conversation_id, "conversation")
    if not caller.reads_all_records and caller.user_id not in row.active_participants:
        raise PermissionDenied("only the conversation's participants can read it")
    return row


@router.delete("/conversations/{conversation_id}", status_code=204, response_class=Response)
def delete_conversation(conversation_id: UUID, caller: Caller, uow: UnitOfWork) -> Response:
    """Forget a conversation's memory (its participants or an admin). Its routing
    decisions, commands and jobs stay."""
    row = get_or_404(uow, ConversationSession, conversation_id, "conversation")
    if caller.user_id not in row.active_participants and not caller.has_any(Role.ADMIN):
        raise PermissionDenied("only the conversation's participants or an admin can delete it")
    uow.delete(row)
    return Response(status_code=204)


@router.get("/conversations/{conversation_id}/messages", response_model=Page[MessageOut])
def list_messages(
    conversation_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    kind: MessageKind = None,
) -> Page[MessageOut]:
    """What was said, newest first (page back with ``nextCursor``): each turn's
    ``request`` and ``reply`` messages and the later ``outcome`` of its device commands.
    For the conversation's participants and the safety and admin roles."""
    _readable(uow.get(ConversationSession, conversation_id), caller, conversation_id)
    stmt = where_equal(
        select(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id),
        (ConversationMessage.kind, kind),
    )
    return paginate(uow, stmt, ConversationMessage.id, cursor, limit, MessageOut.model_validate)


@router.get(
    "/conversations/{conversation_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def conversation_events(
    conversation_id: UUID,
    caller: Caller,
    c: Annotated[Container, Depends(container)],
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """The conversation's new messages as Server-Sent Events (``event: message``, ``id``:
    the message id, ``data``: the message as ``/messages`` lists it), whoever spoke, and
    the outcome of its commands once decided. Send ``Last-Event-ID`` to resume after a
    message. Comments keep the connection alive; the stream ends after
    ``conversations.events_max_seconds``, or when the conversation is deleted."""
    after: UUID | None = None
    if last_event_id:
        try:
            after = UUID(last_event_id)
        except ValueError:
            raise ValidationFailed("Last-Event-ID", "is not a message id") from None
    with c.database.unit_of_work() as session:
        _readable(session.get(ConversationSession, conversation_id), caller, conversation_id)
    settings = c.settings.conversations

    async def stream() -> AsyncIterator[str]:
        yield ": following conversation\n\n"
        async for batch in events.follow(
            c.database,
            conversation_id,
            last_event_id=after,
            clock=c.clock,
            poll_seconds=settings.events_poll_seconds,
            max_seconds=settings.events_max_seconds,
            monotonic=time.monotonic,
        ):
            if not batch:
                yield ": keep-alive\n\n"
            for message in batch:
                yield _event(message)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _event(message: Message) -> str:
    data = MessageOut.model_validate(message).model_dump(mode="json", by_alias=True)
    return f"id: {message.id}\nevent: message\ndata: {json.dumps(data)}\n\n"
