"""What a spoken turn runs on (``conversation.heard``), with the grammar alone: the first
of the recogniser's readings that is a whole device request, never an action for a
question, a clarifying question when readings disagree on polarity; and the recogniser's
own clean-up of its readings (``adapters.speech``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kittylab.adapters.speech.audio import SAMPLE_RATE, trim_silence
from kittylab.adapters.speech.whisper import collapse_repeats, distinct_readings
from kittylab.conversation.heard import choose, spoken_file_names
from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.conversation.ports import Alternative
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.conversation.understanding.types import Understanding
from kittylab.manifest.loader import load_manifest

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
UNDERSTANDER = Understander(None)


def _understand(text: str) -> Understanding:
    return UNDERSTANDER.understand(text, VOCABULARY, use_model=False, use_semantic=False)


def _heard(best: str, *alternatives: tuple[str, float]) -> tuple[str, Understanding]:
    heard = choose(best, [Alternative(t, g) for t, g in alternatives], _understand)
    return heard.text, heard.understanding


def test_a_next_best_reading_that_is_a_whole_request_is_the_one_acted_on() -> None:
    text, u = _heard("would you resume the forum", ("would you resume the voron", 0.2))
    assert text == "would you resume the voron"
    assert (u.intent, u.device and u.device.external_id, u.problem) == (
        "print_resume",
        "voron-24",
        None,
    )


def test_the_best_reading_stands_when_it_is_a_request_or_none_is() -> None:
    text, u = _heard("please pause the bambu x1c", ("please pause the prusa", 0.1))
    assert (text, u.device and u.device.external_id) == ("please pause the bambu x1c", "bambu-x1c")
    text, u = _heard("how do I clean a nozzle", ("how do i clean the nozzle", 0.1))
    assert text == "how do I clean a nozzle"
    assert not u.actionable


def test_readings_that_disagree_on_polarity_ask_which_was_meant() -> None:
    _text, u = _heard(
        "please lock the welding bay door", ("please unlock the welding bay door", 0.1)
    )
    assert u.clarify == ("door_lock", "door_unlock")
    assert u.problem is not None and "lock" in u.problem and "unlock" in u.problem
    assert not u.actionable


def test_a_far_less_likely_opposite_reading_does_not_stop_a_clear_command() -> None:
    _text, u = _heard(
        "please lock the welding bay door", ("please unlock the welding bay door", 0.6)
    )
    assert u.actionable and u.intent == "door_lock"


def test_a_question_is_never_swapped_for_an_action_only_for_a_read() -> None:
    text, u = _heard("is the cnc door open?", ("open the cnc door", 0.05))
    assert u.intent != "door_unlock"
    assert text == "is the cnc door open?"
    text, u = _heard("what is the status on the menu?", ("what is the status of the voron?", 0.1))
    assert (u.intent, u.device and u.device.external_id) == ("printer_status", "voron-24")


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("start printing cog dot decode on the voron", "start printing cog.gcode on the voron"),
        ("print cog.g code on the prusa.", "print cog.gcode on the prusa."),
        ("print cog dot, gee code on the prusa", "print cog.gcode on the prusa"),
        ("print cog dot b g code on the prusa", "print cog.bgcode on the prusa"),
        ("printcog.decode on the bambu", "print cog.gcode on the bambu"),
        ("print the printer status", "print the printer status"),
        ("what does the code say", "what does the code say"),
    ],
)
def test_spoken_file_names_are_written_as_file_names(heard: str, meant: str) -> None:
    assert spoken_file_names(heard) == meant


def test_a_spoken_file_name_reaches_the_print_request() -> None:
    _text, u = _heard("print cog dot decode on the prusa")
    assert (u.intent, u.args) == ("print_start", {"file": "cog.gcode"})


@pytest.mark.parametrize(
    ("looped", "once"),
    [
        ("halt, halt, halt, halt, halt,", "halt,"),
        ("open the hatch. open the hatch. open the hatch. open the", "open the hatch."),
        ("ok go, ok go, ok go, ok go, o", "ok go,"),
        ("turn the dial to 100 100 100", "turn the dial to 100"),
        ("very very good", "very very good"),
        ("the door the door", "the door the door"),
    ],
)
def test_a_decoder_loop_is_cut_back_to_its_first_round(looped: str, once: str) -> None:
    assert collapse_repeats(looped) == once


def test_readings_that_differ_only_in_case_or_punctuation_count_once() -> None:
    readings = [
        ("Open the hatch.", -0.2),
        ("open the hatch", -0.3),
        ("", -0.4),
        ("Open a hatch", -0.5),
    ]
    assert distinct_readings(readings) == [("Open the hatch.", -0.2), ("Open a hatch", -0.5)]


def test_silence_around_speech_is_trimmed_and_a_pause_put_before_it() -> None:
    second = SAMPLE_RATE
    speech = (0.3 * np.sin(np.arange(second) / 5)).astype(np.float32)
    quiet = np.zeros(2 * second, dtype=np.float32)
    trimmed = trim_silence(np.concatenate([quiet, speech, quiet]))
    # 0.6 s of pause, 0.2 s kept either side, the second of speech.
    assert trimmed.size == pytest.approx(2.0 * second, abs=0.05 * second)
    assert not trimmed[: int(0.75 * second)].any()
    assert trim_silence(np.zeros(100, dtype=np.float32)).size == 100
