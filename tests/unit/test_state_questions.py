"""Recognising questions about the lab's own state (pure), on sentences written for these
tests (the held-out corpus is scored by benchmarks/state_answers_bench.py, never here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kittylab.conversation.answers import wording
from kittylab.conversation.answers.facts import DeviceFact
from kittylab.conversation.answers.questions import AnswerKind, Person, recognize
from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
PEOPLE = [Person(uuid.uuid4(), "erin", "Erin Engineer"), Person(uuid.uuid4(), "sam", "Sam Safety")]


@pytest.mark.parametrize(
    ("text", "kind", "devices", "zone"),
    [
        (
            "what's the humidity like over in the farm",
            "sensor_reading",
            ["farm-climate"],
            "print-farm",
        ),
        ("tell me the farm climate reading", "sensor_reading", ["farm-climate"], "print-farm"),
        ("is it smoky in the welding bay", "sensor_reading", ["fume-sensor"], "welding-bay"),
        ("what temperature is the voron's hotend", "printer_status", ["voron-24"], "print-farm"),
        ("how many minutes left on the bambu", "printer_status", ["bambu-x1c"], "print-farm"),
        (
            "are any of the printers busy",
            "printer_status",
            ["prusa-mk4", "voron-24", "bambu-x1c"],
            "print-farm",
        ),
        ("is the welding door locked at the moment", "door_state", ["welding-door"], "welding-bay"),
        (
            "are the doors all secure",
            "door_state",
            ["cnc-door", "laser-door", "welding-door"],
            None,
        ),
        ("who put a lock on the laser", "lock_holders", ["laser-power"], "laser-room"),
        ("does sam hold any locks", "lock_holders", [], None),
        ("are the bench lights still on", "light_state", ["bench-lights"], "electronics-bench"),
        ("is there anybody in the cnc room", "presence", [], "cnc-room"),
        ("where's sam", "presence", [], None),
        ("what is queued on the voron", "print_queue", ["voron-24"], "print-farm"),
        ("did the previous job on the bambu fail", "last_job", ["bambu-x1c"], "print-farm"),
        ("do I have anything to approve", "pending_approvals", [], None),
        ("show me the welding camera", "camera", ["welding-cam"], "welding-bay"),
    ],
)
def test_state_questions_are_recognised_with_their_devices_and_zone(
    text: str, kind: str, devices: list[str], zone: str | None
) -> None:
    q = recognize(text, VOCABULARY, PEOPLE)
    assert q is not None, text
    assert q.kind.value == kind
    assert [d.external_id for d in q.devices] == devices
    assert q.zone == zone


@pytest.mark.parametrize(
    "text",
    [
        "what is the melting point of PETG",
        "what temperature should I print ABS at",
        "why does the voron string so much",
        "explain how the laser cutter works",
        "what do filament prices look like this week",
        "hello",
    ],
)
def test_questions_about_the_world_are_not_state_questions(text: str) -> None:
    assert recognize(text, VOCABULARY, PEOPLE) is None


def test_a_person_and_the_asker_are_told_apart() -> None:
    theirs = recognize("how did sam's last print go", VOCABULARY, PEOPLE)
    mine = recognize("did my last print work", VOCABULARY, PEOPLE)
    assert theirs is not None and theirs.person is not None and theirs.person.username == "sam"
    assert mine is not None and mine.kind is AnswerKind.LAST_JOB and mine.about_asker


def test_it_is_the_device_of_the_conversation() -> None:
    q = recognize("is it done yet", VOCABULARY, PEOPLE, context_device="voron-24")
    assert q is not None and [d.external_id for d in q.devices] == ["voron-24"]


NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _fact(kind: str, state: dict[str, object], ago: float = 8) -> DeviceFact:
    return DeviceFact(
        id=uuid.uuid4(), external_id="x", display_name="farm climate", kind=kind,
        zone="print-farm", online=True, state=state,
        reported_at=NOW - timedelta(seconds=ago), interval_seconds=10,
    )  # fmt: skip


def test_a_sensor_reading_is_said_with_its_units_and_age() -> None:
    state = {
        "temperature": {"value": 22.43, "unit": "°C"},
        "humidity": {"value": 45.2, "unit": "%"},
    }
    text, values = wording.sensors([_fact("sensor", state)], frozenset(), NOW)
    assert text == "Print farm: 22.4 °C, 45 % RH, 8 s ago."
    assert values == {"temperature": 22.43, "humidity": 45.2}


def test_a_printer_says_what_it_does_and_what_was_asked() -> None:
    state = {"state": "printing", "file": "hook.gcode", "progress": 0.5, "seconds_left": 3900,
             "nozzle": {"actual": 240.2, "target": 240}, "bed": {"actual": 99.6, "target": 100}}  # fmt: skip
    fact = _fact("printer", state)
    text, values = wording.printer(fact, frozenset({"time_left"}), NOW)
    assert values["time_left"] == "1 h 5 min"
    assert "about 1 h 5 min left" in text and "50 % done" in text
    assert "nozzle" not in text
    text, _ = wording.printer(fact, frozenset(), NOW)
    assert "printing hook.gcode" in text and "bed 100 °C (target 100 °C)" in text


def test_a_missing_value_is_said_missing_never_made_up() -> None:
    text, values = wording.printer(_fact("printer", {"state": "idle"}), frozenset({"chamber"}), NOW)
    assert "reports no chamber temperature" in text
    assert "chamber_temperature" not in values
    assert wording.age(None) == "never reported"
