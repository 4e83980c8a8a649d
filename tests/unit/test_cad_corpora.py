"""Every prompt of both CAD corpora read by the grammar to its stated size: the spec's
expected extents (what the part library builds, checked against built parts in the
integration sample and the corpus benchmark) within 0.1 mm per axis.

The first corpus (written with the grammar) must read 100 %; the held-out one (written
apart from it, issue 15) at least 95 %."""

from __future__ import annotations

import pytest

from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.cad_spec import expected_bbox
from tests.cad_corpora import FIRST, HELD_OUT, TOLERANCE_MM, Entry, deviation, load


def _misread(entries: list[Entry]) -> list[str]:
    misses = []
    for entry in entries:
        try:
            spec = parse_prompt(entry.prompt)
        except Exception as exc:
            misses.append(f"{entry.prompt!r}: {exc}")
            continue
        read = expected_bbox(spec)
        if deviation(read, entry.bbox) > TOLERANCE_MM:
            misses.append(f"{entry.prompt!r}: read {read}, stated {entry.bbox}")
    return misses


def test_the_corpora_are_as_large_as_promised() -> None:
    assert len(load(FIRST)) >= 100
    assert len(load(HELD_OUT)) >= 60


def test_every_prompt_of_the_first_corpus_is_read_to_its_stated_size() -> None:
    assert _misread(load(FIRST)) == []


def test_at_least_95_percent_of_the_held_out_corpus_is_read_to_its_stated_size() -> None:
    entries = load(HELD_OUT)
    misses = _misread(entries)
    rate = 1 - len(misses) / len(entries)
    print(f"\nheld-out corpus: {len(entries) - len(misses)}/{len(entries)} = {rate:.1%}")
    assert rate >= 0.95, misses


@pytest.mark.parametrize("entry", load(HELD_OUT), ids=lambda e: e.prompt[:40])
def test_the_held_out_corpus_is_read_as_the_family_its_writer_named(entry: Entry) -> None:
    assert parse_prompt(entry.prompt).family.value == entry.family
