"""The voice route's audio rules: which media types it takes and how a body must begin."""

from __future__ import annotations

import pytest

from kittylab.domain.audio import (
    AudioContainer,
    UnsupportedAudioType,
    check_signature,
    container_for,
)
from kittylab.domain.errors import ValidationFailed


@pytest.mark.parametrize(
    ("declared", "container"),
    [
        ("audio/wav", AudioContainer.WAV),
        ("audio/x-wav", AudioContainer.WAV),
        ("Audio/WAV", AudioContainer.WAV),
        ("audio/webm;codecs=opus", AudioContainer.WEBM),
        ("audio/ogg; codecs=opus", AudioContainer.OGG),
    ],
)
def test_accepted_media_types_name_their_container(
    declared: str, container: AudioContainer
) -> None:
    assert container_for(declared) is container


@pytest.mark.parametrize("declared", [None, "", "audio/mpeg", "video/webm", "text/plain"])
def test_other_media_types_are_refused_naming_the_field(declared: str | None) -> None:
    with pytest.raises(UnsupportedAudioType) as refused:
        container_for(declared, "audio")
    assert refused.value.field == "audio"
    assert "audio/wav, audio/webm or audio/ogg" in refused.value.message


def test_a_body_must_begin_as_its_container_does() -> None:
    check_signature(b"RIFF\x00\x00\x00\x00WAVEfmt ", AudioContainer.WAV)
    check_signature(b"\x1a\x45\xdf\xa3\x01", AudioContainer.WEBM)
    check_signature(b"OggS\x00\x02", AudioContainer.OGG)
    for body, container in [
        (b"OggS\x00\x02", AudioContainer.WEBM),
        (b"RIFF\x00\x00\x00\x00AVI LIST", AudioContainer.WAV),
        (b"ID3\x03", AudioContainer.OGG),
    ]:
        with pytest.raises(ValidationFailed) as refused:
            check_signature(body, container)
        assert refused.value.field == "audio"
        assert "corrupt or mislabelled" in refused.value.message


def test_an_empty_body_is_refused_as_empty() -> None:
    with pytest.raises(ValidationFailed, match="empty"):
        check_signature(b"", AudioContainer.WAV)
