"""What the voice route accepts: audio containers by media type, recognised by their first
bytes. Pure: the decoding itself is an adapter's (``adapters.speech.audio``)."""

from __future__ import annotations

from enum import StrEnum

from kittylab.domain.errors import ValidationFailed


class AudioContainer(StrEnum):
    WAV = "wav"
    WEBM = "webm"
    OGG = "ogg"


MEDIA_TYPES: dict[str, AudioContainer] = {
    "audio/wav": AudioContainer.WAV,
    "audio/wave": AudioContainer.WAV,
    "audio/x-wav": AudioContainer.WAV,
    "audio/vnd.wave": AudioContainer.WAV,
    "audio/webm": AudioContainer.WEBM,
    "audio/ogg": AudioContainer.OGG,
}
"""Media types a client may declare. WebM and Ogg carry Opus (or Vorbis) as browsers and
phones record them; WAV carries PCM."""

_NAMES = {
    AudioContainer.WAV: "a WAV file (RIFF/WAVE header)",
    AudioContainer.WEBM: "a WebM file (EBML header)",
    AudioContainer.OGG: "an Ogg file (OggS page)",
}


class UnsupportedAudioType(ValidationFailed):
    """The declared media type is not audio the route takes (HTTP 415)."""


def container_for(content_type: str | None, field: str = "Content-Type") -> AudioContainer:
    """The container a ``Content-Type`` declares (parameters such as ``codecs=opus`` are
    ignored); ``UnsupportedAudioType`` naming ``field`` otherwise."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    container = MEDIA_TYPES.get(media)
    if container is None:
        accepted = "audio/wav, audio/webm or audio/ogg"
        shown = media or "none"
        raise UnsupportedAudioType(field, f"{shown} is not accepted; send {accepted}")
    return container


def check_signature(data: bytes, container: AudioContainer, field: str = "audio") -> None:
    """Refuse bytes that do not start as ``container`` does (a mislabelled or corrupt
    upload) before any decoder sees them."""
    if not data:
        raise ValidationFailed(field, "is empty; record something and send it again")
    head = data[:12]
    matches = {
        AudioContainer.WAV: head[:4] == b"RIFF" and head[8:12] == b"WAVE",
        AudioContainer.WEBM: head[:4] == b"\x1a\x45\xdf\xa3",
        AudioContainer.OGG: head[:4] == b"OggS",
    }[container]
    if not matches:
        raise ValidationFailed(field, f"is not {_NAMES[container]}: corrupt or mislabelled")
