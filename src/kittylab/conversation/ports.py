"""Ports of the query service: the tiers that answer questions, the command path for
device requests and the context publisher. Adapters implement them; bootstrap wires them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from kittylab.adapters.db.tables import Device
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.devices.requests import Requested
from kittylab.domain.errors import InfrastructureError
from kittylab.domain.principal import Principal
from kittylab.fabrication.print_requests import PrintQueued
from kittylab.safety.stop import StopResult


@dataclass(frozen=True)
class TierAnswer:
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    fixed_cost: Decimal | None = None
    """Set by tiers priced per call (an MCP tool); token tiers leave it to the price table."""


class Answerer(Protocol):
    """A tier that answers a question in words (an MCP tool, a frontier model)."""

    name: str
    model: str
    cost_per_call: Decimal | None
    """A fixed price per call (an MCP tool), or None: priced by token usage."""

    def answer(self, question: str) -> TierAnswer:
        """Raises ``ModelUnavailable`` (unreachable, timed out, refused, unusable answer);
        must honour its own timeout."""


class CommandSubmitter(Protocol):
    """Turns an understood device request into a ``DeviceCommand``.

    The implementation (``actions.DispatchingSubmitter``) is ``devices.requests.
    request_command``, as for ``POST /api/device/{id}/command``: the same rules, the same
    safety hold, the same follow-ups registered on the turn's unit of work (the dispatch
    job, or the held command's announcement). It may return a command already ``sent`` or
    ``acked`` (a retried turn)."""

    def submit(
        self,
        uow: UnitOfWork,
        *,
        device: Device,
        intent: str,
        payload: dict[str, Any],
        requester: Principal,
        conversation_id: UUID | None,
        correlation_id: str | None,
    ) -> Requested | PrintQueued:
        """A hazardous intent comes back with ``held`` set (``pending``, waiting for its
        safety event): nothing is sent. ``PermissionDenied`` when ``requester``'s roles may
        not ask for ``intent`` (``domain.actuation``): nothing is recorded. A
        ``print_start`` comes back as the print job it became (``PrintQueued``, issue 16)."""
        ...


class LabStopper(Protocol):
    """Stops a zone (``zone_id``) or, with ``None``, the whole lab, in the turn's unit of
    work: ``safety.stop.stop``, as ``POST /api/zones/{id}/stop`` and ``/api/lab/stop`` do.
    Never held; audited; the commands are sent once the turn commits."""

    def stop(self, uow: UnitOfWork, *, requester: Principal, zone_id: UUID | None) -> StopResult:
        """``PermissionDenied`` when ``requester``'s roles may not stop equipment (the
        role table of ``domain.actuation``): nothing is recorded."""
        ...


class ContextPublisher(Protocol):
    """Shares a conversation's context with other clients (MQTT ``kitty/ctx/<id>``,
    retained). Called after the turn is committed; failures are logged, never raised to
    the person talking."""

    def publish(self, conversation_id: UUID, context: dict[str, Any]) -> None: ...


class CadStarter(Protocol):
    """Starts CAD generation for a ``cad_generate`` request and says, in one sentence,
    what was started and where it stands. Refusals (an unreadable or impossible part, no
    provider) come back as the sentence, not as errors."""

    def start(
        self, prompt: str, requested_by: UUID, conversation_id: UUID, *, offline: bool
    ) -> str:
        """``offline``: only offline providers (the lab is in offline mode)."""


# -- voice (``conversation.voice``) --------------------------------------------------------


@dataclass(frozen=True)
class DecodedAudio:
    """An utterance as speech-to-text takes it: mono, 16 kHz, float32 samples in [-1, 1]
    (little-endian bytes, so the port stays free of numpy)."""

    samples: bytes
    sample_rate: int
    seconds: float
    peak_dbfs: float
    """The level of the loudest 20 ms window (RMS, dB below full scale): silence is low."""


class AudioUndecodable(Exception):
    """The bytes are not audio of the declared container, or are cut or damaged."""


class AudioTooLong(Exception):
    """Decoding stopped at the limit: the utterance is longer than it."""


class AudioDecoder(Protocol):
    def decode(self, data: bytes, container: str, *, max_seconds: float) -> DecodedAudio:
        """Decode ``data`` (``container``: ``wav``, ``webm`` or ``ogg``). Raises
        ``AudioUndecodable``, or ``AudioTooLong`` as soon as more than ``max_seconds``
        were decoded (a small compressed file may hold hours: it is never decoded whole)."""
        ...


@dataclass(frozen=True)
class Alternative:
    """Another reading of the same speech than the recogniser's best."""

    text: str
    gap: float
    """How much less likely than the best reading: the difference of their mean
    log-probabilities per token (0: as likely; 0.1 is close, 1 far)."""


@dataclass(frozen=True)
class Transcript:
    text: str
    model: str
    seconds: float
    """How long the transcription took."""
    alternatives: tuple[Alternative, ...] = ()
    """The recogniser's next-best readings, most likely first, without ``text`` and without
    readings that differ from an earlier one only in case or punctuation."""


class SpeechToText(Protocol):
    """Transcribes an utterance locally. Loads its model on first use (blocking that call);
    never downloads anything."""

    name: str

    def transcribe(self, audio: DecodedAudio, *, hints: Sequence[str]) -> Transcript:
        """``hints``: the lab's words (device names and aliases) the recogniser should
        favour. Raises ``SpeechUnavailable`` when the model cannot be loaded or run."""
        ...


class TextToSpeech(Protocol):
    name: str

    def speak(self, text: str) -> bytes:
        """A WAV file saying ``text``. Raises ``SpeechUnavailable``."""
        ...


class SpeechUnavailable(InfrastructureError):
    """A speech model or program is missing, failed or timed out (503)."""
