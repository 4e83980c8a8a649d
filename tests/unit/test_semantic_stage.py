"""The semantic stage on the real MiniLM encoder (loaded once for the module): the
held-out polarity pairs never invert, and a sample of the held-out paraphrases stays above
the target. The whole corpora run in ``benchmarks/semantic_bench.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kittylab.adapters.llm.minilm import MiniLmEncoder
from kittylab.cli.parse import evaluate
from kittylab.config import QuerySettings
from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.conversation.understanding import polarity
from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.conversation.understanding.semantic import SemanticStage
from kittylab.conversation.understanding.vocabulary import LabVocabulary
from kittylab.manifest.loader import load_manifest

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = ROOT / "tests" / "data" / "conversation"


def _lines(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (HELD_OUT / name).read_text().splitlines() if line]


@pytest.fixture(scope="module")
def vocabulary() -> LabVocabulary:
    return vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))


@pytest.fixture(scope="module")
def understander() -> Understander:
    stage = SemanticStage(MiniLmEncoder())
    stage.warm_up()
    return Understander(None, semantic=stage)


def test_no_polarity_pair_is_inverted_and_no_hazard_is_reported_safe(
    understander: Understander, vocabulary: LabVocabulary
) -> None:
    # Every pair: 168 utterances cost about 2 s once the encoder is loaded.
    report = evaluate(understander, vocabulary, QuerySettings(), _lines("polarity.jsonl"))
    assert report.inversions == [], report.render()
    assert report.hazardous_reported_safe == []
    assert report.asks_acted_on == 0


def test_a_sample_of_paraphrases_is_read_exactly(
    understander: Understander, vocabulary: LabVocabulary
) -> None:
    sample = _lines("paraphrases.jsonl")[::3]
    report = evaluate(understander, vocabulary, QuerySettings(), sample)
    assert report.exact / report.total >= 0.88, report.render()
    assert report.inversions == []
    assert report.asks_acted_on == 0


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("don't leave the door unlocked", "door_lock"),
        ("keep the door locked", "door_lock"),
        ("the machine shouldn't be live", "power_off"),
        ("stop heating the printer", "printer_cooldown"),
        ("continue the paused print", "print_resume"),
    ],
)
def test_negated_states_point_the_other_way(text: str, intent: str) -> None:
    cues = polarity.read_polarity(normalize(text))
    assert not polarity.contradicts(intent, cues)
    assert polarity.contradicts(polarity.OPPOSITE[intent], cues)


def test_a_negated_verb_is_a_prohibition_not_the_opposite() -> None:
    cues = polarity.read_polarity("do not unlock the door")
    assert cues.prohibited
    assert not polarity.contradicts("door_unlock", cues)


def test_a_reading_against_its_words_becomes_a_clarifying_question(
    understander: Understander, vocabulary: LabVocabulary
) -> None:
    # The grammar reads "print <file>" into this; the words say cancel.
    u = understander.understand("the bambu print failed, cancel it", vocabulary)
    assert u.clarify and not u.actionable
    assert u.problem is not None and u.problem.startswith("Did you want me to")


def test_a_remark_naming_a_device_is_no_request(
    understander: Understander, vocabulary: LabVocabulary
) -> None:
    u = understander.understand("the welding machine hums a lot lately", vocabulary)
    assert not u.actionable


def test_typos_of_cue_words_are_set_right_and_inflections_kept() -> None:
    assert polarity.fix_cue_typos("lcok the door and cancle it") == "lock the door and cancel it"
    assert polarity.fix_cue_typos("the paused print is powered") == "the paused print is powered"
