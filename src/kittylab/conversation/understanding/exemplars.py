"""Exemplars of the semantic stage: sentences per intent, written with kind words instead
of device names (``slots.mask``), from two sources only —

- the grammar's own templates (``templates.INTENT_SENTENCES``), sampled: every
  alternative and optional part of a template taken in turn with a fixed seed;
- the lab's existing query corpus (``tests/data/query_corpus.jsonl``), masked and shipped
  as ``corpus_exemplars.json`` by ``scripts/build_exemplars.py`` (the entries marked
  ``held_out`` stay out).

The held-out corpora of ``tests/data/conversation/`` are never a source.
"""

from __future__ import annotations

import json
import random
from functools import cache
from importlib import resources

from kittylab.conversation.understanding.slots import KIND_PHRASE, ZONE_WORD
from kittylab.conversation.understanding.templates import EXPANSION_RULES, INTENT_SENTENCES
from kittylab.conversation.understanding.types import ASK, CAD_GENERATE, STOP
from kittylab.domain.enums import DeviceKind

SAMPLES_PER_TEMPLATE = 10
CORPUS_FILE = "corpus_exemplars.json"

# What a device rule of the templates becomes in an exemplar.
_DEVICE_RULE = {kind.value: KIND_PHRASE[kind] for kind in DeviceKind}
_SLOTS = {
    "zone": ZONE_WORD,
    "brightness": "40",
    "nozzle": "210",
    "bed": "60",
    "file": "part.gcode",
    "material": "pla",
    "measure": "temperature",
    "prompt": "bracket",
}
# Intents the semantic stage never chooses: the stop is the grammar's alone (never
# guessed), a CAD request belongs to the part grammar; both count as "not a device".
_NOT_SEMANTIC = {STOP: None, CAD_GENERATE: ASK, "_help": ASK, "_repeat": None}


class _Sampler:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)  # noqa: S311 - a sample, not a secret

    def expand(self, template: str) -> str:
        text, _ = self._sequence(template, 0, "")
        return " ".join(text.split())

    def _sequence(self, s: str, i: int, stops: str) -> tuple[str, int]:
        """Read until one of ``stops`` (not consumed); choose among alternatives."""
        branches: list[str] = []
        current: list[str] = []
        while i < len(s) and s[i] not in stops:
            ch = s[i]
            if ch == "|":
                branches.append("".join(current))
                current = []
                i += 1
            elif ch in "([":
                inner, i = self._sequence(s, i + 1, ")]")
                i += 1  # the closing bracket
                optional = ch == "["
                current.append("" if optional and self.random.random() < 0.5 else f" {inner} ")
            elif ch == "<":
                end = s.index(">", i)
                current.append(f" {self._rule(s[i + 1 : end])} ")
                i = end + 1
            elif ch == "{":
                end = s.index("}", i)
                name = s[i + 1 : end]
                current.append(f" {self._slot(name)} ")
                i = end + 1
            else:
                current.append(ch)
                i += 1
        branches.append("".join(current))
        return self.random.choice(branches), i

    def _rule(self, name: str) -> str:
        if name in _DEVICE_RULE:
            phrase = _DEVICE_RULE[name]
            return self.random.choice(
                [f"the {phrase}", f"the {phrase}", "it", f"the {phrase} in the {ZONE_WORD}"]
            )
        if name == "in_zone":
            return f"in the {ZONE_WORD}"
        return self.expand(EXPANSION_RULES[name])

    def _slot(self, name: str) -> str:
        if name in _SLOTS:
            return _SLOTS[name]
        kind = name.removesuffix("_kind")
        return _DEVICE_RULE.get(kind, name)


@cache
def template_exemplars() -> tuple[tuple[str, str], ...]:
    """(text, intent) sampled from the templates."""
    out: dict[tuple[str, str], None] = {}
    for name, sentences in INTENT_SENTENCES.items():
        intent = _NOT_SEMANTIC.get(name, name)
        if intent is None:
            continue
        for n, template in enumerate(sentences):
            sampler = _Sampler(seed=hash_seed(name, n))
            for _ in range(SAMPLES_PER_TEMPLATE):
                out.setdefault((sampler.expand(template), intent), None)
    return tuple(out)


def hash_seed(name: str, n: int) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) * 1000 + n


@cache
def corpus_exemplars() -> tuple[tuple[str, str], ...]:
    raw = resources.files(__package__).joinpath(CORPUS_FILE).read_text(encoding="utf-8")
    out = []
    for text, intent in json.loads(raw):
        mapped = _NOT_SEMANTIC.get(intent, intent)
        if mapped is not None:
            out.append((text, mapped))
    return tuple(out)


def all_exemplars() -> tuple[tuple[str, str], ...]:
    seen: dict[tuple[str, str], None] = {}
    for pair in (*template_exemplars(), *corpus_exemplars()):
        seen.setdefault(pair, None)
    return tuple(seen)
