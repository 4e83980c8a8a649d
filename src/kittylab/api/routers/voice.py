"""``POST /api/voice/turn``: talk to the lab. The audio is the raw body with its
``Content-Type`` (``audio/wav``, ``audio/webm``, ``audio/ogg``), or the ``audio`` field of
a multipart form; ``conversationId`` and ``channel`` are query parameters. The answer is
``/api/query``'s body plus the ``transcript`` and an ``audio`` link to the spoken reply
(``GET /api/voice/replies/{id}``, with the same token). The body's size is bounded by
``voice.max_audio_bytes`` (413, before it is read whole), its length by
``voice.max_audio_seconds``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field
from starlette.datastructures import UploadFile

from kittylab.api import problems
from kittylab.api.auth import Caller, container
from kittylab.api.routers.query import Channel, QueryOut, _out, _request_uuid
from kittylab.api.schemas import CamelModel
from kittylab.bootstrap import Container
from kittylab.conversation.ports import SpeechUnavailable
from kittylab.conversation.voice import VoiceRequest, VoiceResult, VoiceService
from kittylab.domain.audio import UnsupportedAudioType
from kittylab.domain.errors import ValidationFailed

router = APIRouter(prefix="/api/voice", tags=["voice"])

TURN_PATH = "/api/voice/turn"

Wired = Annotated[Container, Depends(container)]


class SpeechOut(CamelModel):
    audio_seconds: float = Field(description="Length of the utterance.")
    decode_ms: int
    transcribe_ms: int
    turn_ms: int = Field(description="The turn itself, as /api/query runs it.")
    speak_ms: int
    model: str = Field(description="The speech-to-text model.")


class VoiceTurnOut(QueryOut):
    transcript: str = Field(description="What was heard; the turn ran on this text.")
    audio: str | None = Field(
        description="Where to fetch the spoken reply (WAV) with the same token; null when "
        "it could not be spoken."
    )
    speech: SpeechOut


def _voice(c: Container) -> VoiceService:
    if c.voice is None:
        raise SpeechUnavailable("voice is not configured on this server")
    return c.voice


@router.post(
    "/turn",
    response_model=VoiceTurnOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                "audio/webm": {"schema": {"type": "string", "format": "binary"}},
                "audio/ogg": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"audio": {"type": "string", "format": "binary"}},
                        "required": ["audio"],
                    }
                },
            },
        }
    },
    responses={
        202: {"model": VoiceTurnOut, "description": "An action waits for safety approval"},
        413: {"description": "The audio is over voice.maxAudioBytes"},
        415: {"description": "Not audio/wav, audio/webm or audio/ogg"},
        422: {"description": "Empty, corrupt, too long or silent audio, or nothing heard"},
        503: {"description": "Speech-to-text is not available"},
    },
)
async def turn(
    request: Request,
    caller: Caller,
    c: Wired,
    conversation_id: Annotated[
        UUID | None,
        Query(alias="conversationId", description="Continue this conversation."),
    ] = None,
    channel: Annotated[Channel, Query(description="Where the person speaks from.")] = (
        "wall_terminal"
    ),
) -> Response:
    """Transcribe the audio, run it as a turn of the conversation and speak the reply.
    202 with ``pendingHazard`` when the action needs approval, as ``/api/query``."""
    voice = _voice(c)
    content_type, audio, type_field = await _audio(request)
    voice_request = VoiceRequest(
        audio=audio,
        content_type=content_type,
        channel=channel,
        conversation_id=conversation_id,
        request_id=_request_uuid(request),
        type_field=type_field,
    )
    try:
        result = await run_in_threadpool(voice.turn, caller, voice_request)
    except UnsupportedAudioType as exc:
        return problems.problem(
            request, 415, "unsupported-media-type", "Unsupported audio", str(exc), field=exc.field
        )
    except SpeechUnavailable as exc:
        return problems.problem(
            request,
            503,
            "unavailable",
            "Speech unavailable",
            str(exc),
            headers={"Retry-After": "5"},
        )
    body = _voice_out(request, result)
    code = status.HTTP_202_ACCEPTED if result.query.pending_hazard is not None else 200
    return JSONResponse(body.model_dump(mode="json", by_alias=True), status_code=code)


@router.get(
    "/replies/{reply_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/wav": {}}}, 404: {"description": "Not yours or gone"}},
)
def reply_audio(reply_id: UUID, caller: Caller, c: Wired) -> StreamingResponse:
    """A spoken reply of one of the caller's own voice turns, while it is kept
    (``voice.reply_ttl_seconds``)."""
    chunks: Iterator[bytes] = _voice(c).reply_audio(caller, reply_id)
    return StreamingResponse(
        chunks, media_type="audio/wav", headers={"Cache-Control": "private, max-age=300"}
    )


async def _audio(request: Request) -> tuple[str | None, bytes, str]:
    """The audio, its declared type and where that was declared: the raw body, or a
    multipart form's ``audio`` part."""
    declared = request.headers.get("content-type")
    if (declared or "").lower().startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        try:
            part = form.get("audio")
            if not isinstance(part, UploadFile):
                raise ValidationFailed("audio", "the multipart form has no file field 'audio'")
            return part.content_type, await part.read(), "audio"
        finally:
            await form.close()
    return declared, await request.body(), "Content-Type"


def _voice_out(request: Request, result: VoiceResult) -> VoiceTurnOut:
    out: QueryOut = _out(result.query)
    audio = (
        str(request.url_for("reply_audio", reply_id=str(result.reply_audio_id)).path)
        if result.reply_audio_id is not None
        else None
    )
    t = result.timings
    return VoiceTurnOut(
        **dict(out),
        transcript=result.transcript,
        audio=audio,
        speech=SpeechOut(
            audio_seconds=round(t.audio_seconds, 3),
            decode_ms=t.decode_ms,
            transcribe_ms=t.transcribe_ms,
            turn_ms=t.turn_ms,
            speak_ms=t.speak_ms,
            model=t.model,
        ),
    )
