"""POST /api/voice/turn on the real database with the demo lab, the real Whisper base
model (loaded once for the module), espeak-ng's speech and PyAV's decoding: bad audio is
refused with a problem naming the field and leaves no trace; a spoken request is the same
turn as a typed one (held when hazardous, refused for a role that may not actuate), with
its transcript and channel recorded and its reply spoken and fetchable by its speaker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import DeviceCommand, RoutingDecision
from kittylab.adapters.speech.whisper import WhisperSpeechToText, default_model_dir
from kittylab.config import Settings
from tests.integration.conftest import Person, _person
from tests.integration.test_query_api import _apply_without_people, _dispatch_jobs
from tests.integration.voice_audio import opus, silence, speak, tone

TURN = "/api/voice/turn"


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperSpeechToText]:
    """One model for every test here: loading it costs a second or two."""
    model = WhisperSpeechToText(default_model_dir(), threads=2, idle_release_seconds=0)
    model.warm_up()
    yield model
    model.release()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        _env_file=None,
        query={"model": {"backend": "none"}},
        voice={"max_audio_bytes": 512 * 1024, "max_audio_seconds": 8},
    )


@pytest.fixture
def voice_lab(
    container: bootstrap.Container,
    database: Database,
    demo_lab_path: Path,
    whisper: WhisperSpeechToText,
) -> bootstrap.Container:
    _apply_without_people(database, container, demo_lab_path)
    assert container.voice is not None
    container.voice.stt = whisper
    return container


@pytest.fixture
def engineer(database: Database) -> Person:
    return _person(database, "erin", ["engineer"])


def _say(client: TestClient, person: Person, audio: bytes, content_type: str, **params: Any) -> Any:
    headers = {**person.headers, "content-type": content_type}
    return client.post(TURN, content=audio, headers=headers, params=params)


def _decisions(database: Database) -> list[RoutingDecision]:
    with database.unit_of_work() as s:
        return list(s.scalars(select(RoutingDecision)))


def _commands(database: Database) -> list[DeviceCommand]:
    with database.unit_of_work() as s:
        return list(s.scalars(select(DeviceCommand)))


# --- bad audio: a clear 4xx naming the field, nothing recorded --------------------------


@pytest.mark.parametrize(
    ("audio", "content_type", "code", "field", "says"),
    [
        (b"", "audio/wav", 422, "audio", "empty"),
        (b"hello", "text/plain", 415, "Content-Type", "text/plain is not accepted"),
        (b"RIFF", "application/octet-stream", 415, "Content-Type", "audio/wav"),
        (b"\x00" * 64, "audio/wav", 422, "audio", "not a WAV file"),
        (b"OggS" + b"\x00" * 200, "audio/webm", 422, "audio", "not a WebM file"),
        (b"RIFF\x24\x00\x00\x00WAVEjunk" + b"\x07" * 300, "audio/wav", 422, "audio", "decoded"),
        (b"OggS" + b"\x00" * 200, "audio/ogg", 422, "audio", "decoded"),
        (silence(1.5), "audio/wav", 422, "audio", "silent"),
        (tone(9.0), "audio/wav", 422, "audio", "longer than the 8 s limit"),
        (b"RIFF" + b"\x00" * (600 * 1024), "audio/wav", 413, "body", "limited"),
    ],
    ids=[
        "empty",
        "text",
        "octet-stream",
        "not-wav",
        "ogg-as-webm",
        "corrupt-wav",
        "corrupt-ogg",
        "silent",
        "too-long",
        "too-big",
    ],
)
def test_bad_audio_is_a_clear_problem_naming_the_field_and_records_nothing(
    voice_lab: bootstrap.Container,
    client: TestClient,
    database: Database,
    operator: Person,
    audio: bytes,
    content_type: str,
    code: int,
    field: str,
    says: str,
) -> None:
    r = _say(client, operator, audio, content_type)
    assert r.status_code == code, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["field"] == field, problem
    assert says in problem["detail"], problem
    assert _decisions(database) == []
    assert _commands(database) == []


def test_a_multipart_form_without_an_audio_file_names_the_audio_field(
    voice_lab: bootstrap.Container, client: TestClient, operator: Person
) -> None:
    r = client.post(
        TURN, headers=operator.headers, files={"sound": ("a.wav", silence(0.2), "audio/wav")}
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "audio"
    r = client.post(
        TURN, headers=operator.headers, files={"audio": ("a.mp3", b"ID3xxxx", "audio/mpeg")}
    )
    assert r.status_code == 415, r.text
    assert r.json()["field"] == "audio"


def test_voice_needs_a_token(voice_lab: bootstrap.Container, client: TestClient) -> None:
    r = client.post(TURN, content=silence(0.5), headers={"content-type": "audio/wav"})
    assert r.status_code == 401


# --- spoken turns (the real model) --------------------------------------------------------


def test_a_spoken_unlock_is_held_like_a_typed_one_and_its_transcript_is_recorded(
    voice_lab: bootstrap.Container,
    client: TestClient,
    database: Database,
    operator: Person,
    admin: Person,
) -> None:
    audio = speak("unlock the welding bay door", voice="en-us+f3", speed=175)
    r = _say(client, operator, audio, "audio/wav", channel="wall_terminal")
    assert r.status_code == 202, r.text
    body = r.json()
    assert "unlock" in body["transcript"].lower(), body["transcript"]
    hazard = body["pendingHazard"]
    assert (hazard["intent"], hazard["device"]) == ("door_unlock", "welding-door")
    assert body["command"]["status"] == "pending"
    assert body["command"]["safetyEventId"] == hazard["eventId"]
    assert _dispatch_jobs(database) == 0
    assert body["routing"]["outcome"] == "pending_hazard"
    assert body["speech"]["audioSeconds"] > 1
    [decision] = _decisions(database)
    assert decision.details["channel"] == "wall_terminal"
    assert decision.details["voice"]["transcript"] == body["transcript"]
    assert decision.details["voice"]["stt"].startswith("faster-whisper")
    # The recogniser's readings were weighed (conversation.heard); this one ran.
    assert decision.details["voice"]["readings"] >= 1
    # The spoken reply: for the speaker's token only.
    assert body["audio"].startswith("/api/voice/replies/")
    spoken = client.get(body["audio"], headers=operator.headers)
    assert spoken.status_code == 200
    assert spoken.headers["content-type"] == "audio/wav"
    assert spoken.content[:4] == b"RIFF" and len(spoken.content) > 10_000
    assert client.get(body["audio"], headers=admin.headers).status_code == 404
    assert client.get(body["audio"]).status_code == 401


def test_an_engineers_spoken_switching_is_refused_like_typed_and_sends_nothing(
    voice_lab: bootstrap.Container, client: TestClient, database: Database, engineer: Person
) -> None:
    audio = opus(speak("turn on the welding lights", voice="en-us", speed=160), "webm")
    r = client.post(
        TURN,
        headers=engineer.headers,
        files={"audio": ("turn.webm", audio, "audio/webm;codecs=opus")},
        params={"channel": "ipad"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["routing"]["intent"] == "light_on", body["transcript"]
    assert body["routing"]["outcome"] == "refused"
    assert body["command"] is None
    reply = body["replies"][0]["text"]
    assert "engineer" in reply and "Nothing was sent" in reply
    assert _commands(database) == []
    [decision] = _decisions(database)
    assert decision.details["channel"] == "ipad"
    assert decision.details["voice"]["container"] == "webm"


def test_a_spoken_turn_continues_the_conversation_given(
    voice_lab: bootstrap.Container, client: TestClient, database: Database, operator: Person
) -> None:
    typed = client.post(
        "/api/query",
        content=json.dumps({"channel": "cli", "input": {"text": "status of the voron"}}),
        headers={**operator.headers, "content-type": "application/json"},
    )
    conversation = typed.json()["conversationId"]
    audio = opus(speak("lock the cnc door", voice="en-gb-x-rp", speed=150), "ogg")
    r = _say(client, operator, audio, "audio/ogg", conversationId=conversation)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["conversationId"] == conversation
    assert (body["routing"]["intent"], body["routing"]["device"]) == ("door_lock", "cnc-door")
    assert body["command"]["requestedBy"] == str(operator.user_id)


# --- a sample of the held-out spoken commands (the whole corpus: benchmarks/voice_bench.py)


SPOKEN = Path(__file__).resolve().parents[1] / "data" / "conversation" / "spoken_commands.jsonl"
SAMPLE_VOICES = [("en-us", 160), ("en-us+f3", 175), ("en-gb-x-rp", 150), ("en-us+m3", 140)]


def test_a_sample_of_the_spoken_commands_runs_end_to_end_and_is_scored(
    voice_lab: bootstrap.Container,
    client: TestClient,
    database: Database,
    operator: Person,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entries = [json.loads(line) for line in SPOKEN.read_text().splitlines() if line.strip()]
    sample = entries[::12][:5]
    right = 0
    for i, entry in enumerate(sample):
        voice, speed = SAMPLE_VOICES[i % len(SAMPLE_VOICES)]
        r = _say(client, operator, speak(entry["text"], voice=voice, speed=speed), "audio/wav")
        assert r.status_code in (200, 202), r.text
        body = r.json()
        assert body["transcript"]
        got = (body["routing"]["intent"], body["routing"]["device"])
        right += got == (entry["intent"], entry["device"])
        with capsys.disabled():
            print(f"\n  voice sample: {entry['text']!r} → {body['transcript']!r} → {got}")
    assert len(_decisions(database)) == len(sample)
    with capsys.disabled():
        print(f"  voice sample: {right}/{len(sample)} right intent and device")
