"""The console's talk page (issue 17, item 3): ``/talk`` (a new conversation) and
``/talk/{id}``, the turns it sends at ``/console/talk/say``, and each conversation's live
transcript at ``/console/talk/{id}/events``.

A typed turn is ``POST /api/query``'s own use case (``QueryService.handle``, the same role
gate and safety hold); a spoken one is the page's call to ``POST /api/voice/turn``, after
which the page asks for the turn as HTML (``/console/talk/{id}/turns/{request_id}``). The
transcript is the stored messages (``conversation.messages``): what the console, ``kittylab
shell --continue``, a voice turn or another screen said in the conversation appears on
every open page through the conversation's event stream (``conversation.events.follow``),
and a command's outcome updates the reply that sent it when it is decided.

Who may open a conversation: its participants, and the safety and admin roles (as
``/api/conversations/{id}/messages``). The list beside it is the viewer's own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from kittylab.adapters.db.tables import ConversationSession
from kittylab.api import networks
from kittylab.api.auth import Caller, container
from kittylab.api.routers.console import (
    _canonical_host,
    _page,
    _sse,
    _viewer,
    live_response,
    templates,
)
from kittylab.api.routers.query import Channel, _request_uuid
from kittylab.bootstrap import Container
from kittylab.conversation import events
from kittylab.conversation.query import QueryRequest
from kittylab.domain.errors import NotFound, PermissionDenied, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.web import talk

router = APIRouter(include_in_schema=False)

Wired = Annotated[Container, Depends(container)]

CHANNEL_WORDS = {
    "mac": "desktop",
    "ipad": "tablet",
    "wall_terminal": "wall terminal",
    "remote": "remote",
    "cli": "shell",
}
"""The channels (``POST /api/query``'s) as the transcript names them."""


def _readable(row: ConversationSession | None, caller: Principal, conversation_id: UUID) -> None:
    if row is None:
        raise NotFound("conversation", conversation_id)
    if not caller.reads_all_records and caller.user_id not in row.active_participants:
        raise PermissionDenied("only the conversation's participants can read it")


@dataclasses.dataclass(frozen=True)
class Shown:
    """One conversation as the panel shows it."""

    id: UUID
    title: str
    messages: list[talk.MessageView]

    @property
    def last_id(self) -> UUID | None:
        return self.messages[-1].id if self.messages else None


def _shown(c: Container, caller: Principal, conversation_id: UUID) -> Shown:
    with c.database.unit_of_work() as session:
        _readable(session.get(ConversationSession, conversation_id), caller, conversation_id)
        messages = talk.transcript(session, conversation_id, caller.user_id, c.clock())
    first = next((m.text for m in messages if m.kind == "request"), None)
    return Shown(conversation_id, talk.title(first), messages)


def _list(c: Container, caller: Principal) -> list[talk.ConversationRow]:
    with c.database.unit_of_work() as session:
        return talk.conversations(session, caller.user_id)


def _common(c: Container, caller: Principal) -> dict[str, Any]:
    """What the page and a new panel need besides the conversation."""
    remote = caller.remote
    return {
        "channel_words": CHANNEL_WORDS,
        "remote": remote,
        # Push-to-talk where the voice route would take it: from the lab's networks, with
        # speech-to-text configured.
        "voice": c.voice is not None and c.settings.voice.stt.backend != "none" and not remote,
        "voice_max_seconds": c.settings.voice.max_audio_seconds,
        "channel": "remote" if remote else "mac",
    }


# --- the page ----------------------------------------------------------------------------


@router.get("/talk", response_class=HTMLResponse)
def talk_page(request: Request, c: Wired) -> Response:
    """A new conversation, with the viewer's earlier ones beside it."""
    return _talk_page(request, c, None)


@router.get("/talk/{conversation_id}", response_class=HTMLResponse)
def conversation_page(conversation_id: UUID, request: Request, c: Wired) -> Response:
    """A conversation's transcript, live, to carry on in."""
    return _talk_page(request, c, conversation_id)


def _talk_page(request: Request, c: Container, conversation_id: UUID | None) -> Response:
    if (moved := _canonical_host(request, c)) is not None:
        return RedirectResponse(moved, status_code=307)
    viewer = _viewer(request, c)
    remote = not networks.is_trusted(request, c.settings.http)
    caller = dataclasses.replace(viewer.principal, remote=remote)
    shown: Shown | None = None
    missing: str | None = None
    if conversation_id is not None:
        try:
            shown = _shown(c, caller, conversation_id)
        except (NotFound, PermissionDenied) as exc:
            missing = str(exc)
    return _page(
        request,
        "talk.html",
        {
            "page": "talk",
            "conversation": shown,
            "missing": missing,
            "conversations": _list(c, caller),
            **_common(c, caller),
        },
        viewer,
    )


# --- turns -------------------------------------------------------------------------------


def _turn_html(
    request: Request, c: Container, caller: Principal, conversation_id: UUID, request_id: UUID
) -> HTMLResponse:
    """The turn's messages, appended to the transcript (with the list beside it fresh)."""
    with c.database.unit_of_work() as session:
        _readable(session.get(ConversationSession, conversation_id), caller, conversation_id)
        found = talk.turn(session, conversation_id, request_id, caller.user_id, c.clock())
        listed = talk.conversations(session, caller.user_id)
    response = templates.TemplateResponse(
        request,
        "_talk_turn.html",
        {
            "messages": found,
            "conversations": listed,
            "current": conversation_id,
            "channel_words": CHANNEL_WORDS,
        },
    )
    response.headers["HX-Retarget"] = "#transcript"
    response.headers["HX-Reswap"] = "beforeend"
    return response


def _panel_html(
    request: Request, c: Container, caller: Principal, conversation_id: UUID
) -> Response:
    """A conversation that has just begun: its whole panel, in place of the empty one,
    and the page's address becomes the conversation's."""
    shown = _shown(c, caller, conversation_id)
    response = templates.TemplateResponse(
        request,
        "_talk_started.html",
        {
            "conversation": shown,
            "conversations": _list(c, caller),
            "current": conversation_id,
            **_common(c, caller),
        },
    )
    response.headers["HX-Retarget"] = "#conversation"
    response.headers["HX-Reswap"] = "outerHTML"
    response.headers["HX-Push-Url"] = f"/talk/{conversation_id}"
    return response


@router.post("/console/talk/say", response_class=HTMLResponse)
def say(
    request: Request,
    caller: Caller,
    c: Wired,
    text: Annotated[str, Form(max_length=20_000)] = "",
    conversation_id: Annotated[str, Form(max_length=64)] = "",
    channel: Annotated[Channel, Form()] = "mac",
) -> Response:
    """A typed turn (``POST /api/query``): the transcript gets its request and replies,
    and its command's outcome when the device answers. From outside the trusted networks
    the channel is ``remote``, whatever the page said."""
    if not text.strip():
        raise ValidationFailed("text", "is empty: type what you want the lab to do or tell you")
    continuing: UUID | None = None
    if conversation_id:
        try:
            continuing = UUID(conversation_id)
        except ValueError:
            raise ValidationFailed("conversation_id", "is not a conversation id") from None
    result = c.query.handle(
        caller,
        QueryRequest(
            text=text,
            channel="remote" if caller.remote else channel,
            conversation_id=continuing,
            request_id=_request_uuid(request),
        ),
    )
    if continuing is None:
        return _panel_html(request, c, caller, result.conversation_id)
    return _turn_html(request, c, caller, result.conversation_id, result.request_id)


@router.get("/console/talk/{conversation_id}/turns/{request_id}", response_class=HTMLResponse)
def turn_messages(
    conversation_id: UUID,
    request_id: UUID,
    request: Request,
    caller: Caller,
    c: Wired,
    started: Annotated[bool, Query(description="The turn began the conversation.")] = False,
) -> Response:
    """A turn made elsewhere (the page's voice turn), as the transcript shows it; with
    ``started``, the whole new conversation's panel."""
    if started:
        return _panel_html(request, c, caller, conversation_id)
    return _turn_html(request, c, caller, conversation_id, request_id)


# --- live --------------------------------------------------------------------------------


@router.get("/console/talk/{conversation_id}/events")
async def talk_events(
    conversation_id: UUID,
    request: Request,
    caller: Caller,
    c: Wired,
    after: Annotated[UUID | None, Query(description="The last message on the page.")] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``message`` carries each new message of the conversation as
    the transcript shows it (its ``id`` is the message's), whoever spoke and from
    wherever; an outcome also updates the reply whose command it ends. Starts after
    ``after`` (the page's last message), or after ``Last-Event-ID`` when reconnecting."""
    resume = after
    if last_event_id:
        try:
            resume = UUID(last_event_id)
        except ValueError:
            raise ValidationFailed("Last-Event-ID", "is not a message id") from None

    def check() -> None:
        with c.database.unit_of_work() as session:
            row = session.get(ConversationSession, conversation_id)
            _readable(row, caller, conversation_id)

    await asyncio.to_thread(check)
    template = templates.get_template("_talk_message.html")
    settings = c.settings.conversations

    def render(batch: list[Any]) -> list[tuple[UUID, str]]:
        with c.database.unit_of_work() as session:
            shown = talk.views(session, batch, caller.user_id, c.clock())
        return [(m.id, template.render(m=m, live=True, channel_words=CHANNEL_WORDS)) for m in shown]

    async def messages_as_they_come() -> AsyncGenerator[str | None, None]:
        following = events.follow(
            c.database,
            conversation_id,
            last_event_id=resume,
            clock=c.clock,
            poll_seconds=settings.events_poll_seconds,
            max_seconds=settings.events_max_seconds,
            monotonic=time.monotonic,
        )
        async with contextlib.aclosing(following):
            async for batch in following:
                if not batch:
                    yield None
                    continue
                for message_id, html in await asyncio.to_thread(render, batch):
                    yield _sse("message", html, str(message_id))

    return live_response(request, c, messages_as_they_come())
