"""A spoken turn: audio in → transcript → the same turn as ``POST /api/query`` → the
reply as text and as speech.

The turn itself is ``QueryService.handle``: the same understanding, the same role gate and
safety hold (a hazardous request by voice is held like a typed one), one routing decision.
What voice adds: the recogniser's next-best readings go with its best, and the turn runs
on the first that is a whole device request (``conversation.heard``; readings that
disagree on polarity make it a clarifying question). Recorded in the decision's
``details.voice``: the transcript the turn ran on (secrets redacted), the recogniser's
best when another was chosen, the audio's length and the recogniser.

Bad audio never reaches the model: an unknown media type (``UnsupportedAudioType``, 415),
an empty body, bytes that are not the declared container, audio that does not decode,
longer than ``max_audio_seconds`` (decoding stops at the limit) or silent, and speech in
which nothing was recognised: each a ``ValidationFailed`` naming ``audio`` (422).

The spoken reply is kept in the artifact store under ``voice/replies/<user>/<id>.wav``
for ``reply_ttl_seconds`` and is fetchable only with the token of the person who spoke
(``reply_audio``). Expired replies are removed as later turns come in.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from kittylab.adapters.db.engine import Database
from kittylab.config import VoiceSettings
from kittylab.conversation.lab import vocabulary_from_database
from kittylab.conversation.ports import (
    AudioDecoder,
    AudioTooLong,
    AudioUndecodable,
    SpeechToText,
    SpeechUnavailable,
    TextToSpeech,
)
from kittylab.conversation.query import QueryRequest, QueryResult, QueryService
from kittylab.conversation.understanding.vocabulary import LabVocabulary
from kittylab.domain.audio import check_signature, container_for
from kittylab.domain.errors import NotFound, PayloadTooLarge, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.domain.sanitize import sanitize_text
from kittylab.records.ports import ArtifactMissing, ArtifactStore, ArtifactStoreError

log = logging.getLogger(__name__)

REPLY_PREFIX = "voice/replies/"
HINTS_TTL_SECONDS = 30.0
PURGE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class VoiceRequest:
    audio: bytes
    content_type: str | None
    channel: str
    conversation_id: UUID | None = None
    request_id: UUID = field(default_factory=uuid.uuid4)
    type_field: str = "Content-Type"
    """Where the media type was declared, for the problem naming it (``audio`` for a
    multipart form's part)."""


@dataclass(frozen=True)
class SpeechTimings:
    audio_seconds: float
    decode_ms: int
    transcribe_ms: int
    turn_ms: int
    speak_ms: int
    model: str


@dataclass(frozen=True)
class VoiceResult:
    query: QueryResult
    transcript: str
    reply_audio_id: UUID | None
    """``None`` when the reply could not be spoken (the text reply stands)."""
    timings: SpeechTimings


class VoiceService:
    def __init__(
        self,
        *,
        query: QueryService,
        database: Database,
        settings: VoiceSettings,
        decoder: AudioDecoder,
        stt: SpeechToText | None,
        tts: TextToSpeech | None,
        store: ArtifactStore,
        clock: Callable[[], datetime],
    ) -> None:
        self.query = query
        self.database = database
        self.settings = settings
        self.decoder = decoder
        self.stt = stt
        self.tts = tts
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._hints: tuple[float, tuple[str, ...]] | None = None
        self._last_purge = float("-inf")

    def turn(self, caller: Principal, request: VoiceRequest) -> VoiceResult:
        """Transcribe ``request.audio`` and run it as a turn of the conversation."""
        container = container_for(request.content_type, request.type_field)
        size = len(request.audio)
        if size > self.settings.max_audio_bytes:
            raise PayloadTooLarge("audio", size, self.settings.max_audio_bytes)
        check_signature(request.audio, container)
        if self.stt is None:
            raise SpeechUnavailable("speech-to-text is turned off (KITTYLAB_VOICE__STT__BACKEND)")
        started = time.perf_counter()
        try:
            audio = self.decoder.decode(
                request.audio, container.value, max_seconds=self.settings.max_audio_seconds
            )
        except AudioTooLong:
            raise ValidationFailed(
                "audio",
                f"is longer than the {self.settings.max_audio_seconds:g} s limit; "
                "say one thing at a time",
            ) from None
        except AudioUndecodable as exc:
            raise ValidationFailed(
                "audio", f"could not be decoded as {container.value}: {exc}"
            ) from None
        if audio.seconds <= 0:
            raise ValidationFailed("audio", "holds no sound")
        if audio.peak_dbfs < self.settings.silence_dbfs:
            raise ValidationFailed(
                "audio",
                f"is silent (loudest {audio.peak_dbfs:.0f} dBFS, below "
                f"{self.settings.silence_dbfs:.0f}); check the microphone",
            )
        decoded = time.perf_counter()
        transcript = self.stt.transcribe(audio, hints=self._lab_hints())
        text = transcript.text.strip()
        if not text:
            raise ValidationFailed("audio", "no words were recognised in it; please say it again")
        transcribed = time.perf_counter()
        result = self.query.handle(
            caller,
            QueryRequest(
                text=text,
                channel=request.channel,
                conversation_id=request.conversation_id,
                request_id=request.request_id,
                voice={
                    "transcript": sanitize_text(text, 500),
                    "audio_seconds": round(audio.seconds, 3),
                    "container": container.value,
                    "stt": transcript.model,
                    "stt_ms": round(transcript.seconds * 1000),
                },
                alternatives=tuple(a for a in transcript.alternatives if a.text.strip()),
            ),
        )
        answered = time.perf_counter()
        reply_id = self._speak(caller.user_id, " ".join(result.replies))
        spoken = time.perf_counter()
        self._purge_expired()
        return VoiceResult(
            query=result,
            transcript=result.heard or text,
            reply_audio_id=reply_id,
            timings=SpeechTimings(
                audio_seconds=audio.seconds,
                decode_ms=_ms(decoded - started),
                transcribe_ms=_ms(transcribed - decoded),
                turn_ms=_ms(answered - transcribed),
                speak_ms=_ms(spoken - answered),
                model=transcript.model,
            ),
        )

    def reply_audio(self, caller: Principal, reply_id: UUID) -> Iterator[bytes]:
        """The spoken reply ``reply_id`` of ``caller``'s own turn, while it is kept;
        ``NotFound`` otherwise (also for another person's reply: it is not theirs to
        know exists)."""
        key = _reply_key(caller.user_id, reply_id)
        kept = next(iter(self.store.list_artifacts(key)), None)
        if kept is None or kept.key != key or self._expired(kept.modified_at):
            raise NotFound("spoken reply", reply_id)
        try:
            return self.store.read_chunks(key)
        except ArtifactMissing:
            raise NotFound("spoken reply", reply_id) from None

    # -- internals ---------------------------------------------------------------------

    def _speak(self, user_id: UUID, text: str) -> UUID | None:
        if self.tts is None or not text.strip():
            return None
        limit = self.settings.tts.max_chars
        spoken = text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
        try:
            wav = self.tts.speak(spoken)
            reply_id = uuid.uuid4()
            self.store.put_bytes(_reply_key(user_id, reply_id), wav, content_type="audio/wav")
        except (SpeechUnavailable, ArtifactStoreError):
            # The turn is recorded and its text reply stands; only the speech is missing.
            log.warning("the reply could not be spoken", exc_info=True)
            return None
        return reply_id

    def _lab_hints(self) -> tuple[str, ...]:
        """``lab_hints`` of the lab as it is now, re-read at most every
        ``HINTS_TTL_SECONDS``."""
        now = time.monotonic()
        with self._lock:
            if self._hints is not None and now - self._hints[0] < HINTS_TTL_SECONDS:
                return self._hints[1]
        with self.database.unit_of_work() as session:
            hints = lab_hints(vocabulary_from_database(session))
        with self._lock:
            self._hints = (now, hints)
        return hints

    def _expired(self, stored_at: datetime) -> bool:
        return stored_at < self.clock() - timedelta(seconds=self.settings.reply_ttl_seconds)

    def _purge_expired(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_purge < PURGE_EVERY_SECONDS:
                return
            self._last_purge = now
        try:
            for artifact in self.store.list_artifacts(REPLY_PREFIX):
                if self._expired(artifact.modified_at):
                    self.store.delete(artifact.key)
        except ArtifactStoreError:
            log.warning("expired spoken replies could not be removed", exc_info=True)


SPOKEN_INTENTS = {
    "print_start": "print",
    "print_pause": "pause",
    "print_resume": "resume",
    "print_cancel": "cancel",
    "printer_status": "status",
    "printer_heat": "preheat, heat the nozzle and bed",
    "printer_cooldown": "cool down",
    "light_on": "turn on",
    "light_off": "turn off",
    "light_set_brightness": "dim to percent",
    "door_lock": "lock",
    "door_unlock": "unlock",
    "power_on": "power on",
    "power_off": "power off",
    "camera_snapshot": "snapshot",
    "sensor_read": "read",
}
"""How each device intent is said, to bias the recogniser with (never to understand)."""


def lab_hints(vocabulary: LabVocabulary) -> tuple[str, ...]:
    """One phrase per kind of device: its devices' names and aliases, then what they are
    asked to do ("lock, unlock: cnc door, laser door, …."). Given to the recogniser as the
    text "before" the utterance, it makes the lab's names and verbs likely. It is a list,
    not commands, on purpose: a prompt made of whole commands ("Unlock the cnc door.") is
    sometimes repeated back instead of what was said, and a list that leaks into a
    transcript is not understood as a request, where a command would be acted on."""
    names: dict[str, dict[str, None]] = {}
    intents: dict[str, set[str]] = {}
    # In a fixed order (kinds, then devices by id), however the lab was read: the prompt
    # changes what is heard, so the same lab always gets the same one.
    for device in sorted(vocabulary.devices, key=lambda d: (d.kind, d.external_id)):
        for name in (device.display_name, *device.aliases):
            if name.strip():
                names.setdefault(device.kind, {})[name.strip()] = None
        intents.setdefault(device.kind, set()).update(device.intents)
    phrases = []
    for kind, kind_names in names.items():
        verbs = [said for intent, said in SPOKEN_INTENTS.items() if intent in intents[kind]]
        # The verbs first: what comes last in the prompt is what leaks into a transcript
        # that begins unclearly, and a name leaking is harmless where "lock," for
        # "unlock" is not.
        phrases.append((", ".join(verbs) + ": " if verbs else "") + ", ".join(kind_names) + ".")
    return tuple(phrases)


def _reply_key(user_id: UUID, reply_id: UUID) -> str:
    return f"{REPLY_PREFIX}{user_id}/{reply_id}.wav"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
