"""``/api/conversations``: conversation sessions (their routing decisions: ``/api/routing``)."""

from __future__ import annotations

import secrets
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy import select

from kittylab.adapters.db.tables import ConversationSession
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import ConversationCreate, ConversationOut
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.errors import Conflict, PermissionDenied

router = APIRouter(prefix="/api", tags=["conversations"])


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
