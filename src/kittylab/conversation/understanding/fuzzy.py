"""Typo and speech-to-text tolerance: words the grammar does not know are replaced by the
closest word it does ("prusha" → "prusa", "vornon" → "voron"), and names split by a
recogniser ("x 1 c") are joined again. Every replacement is reported, and each one lowers
the confidence of the reading."""

from __future__ import annotations

from collections.abc import Iterable

from rapidfuzz import fuzz, process

# Below this a word is too short to correct safely ("on" vs "of").
_MIN_LENGTH = 4


class Corrector:
    def __init__(
        self,
        known_words: Iterable[str],
        joined_names: Iterable[str],
        exact_words: Iterable[str] = (),
    ) -> None:
        """``exact_words`` are known (left as they are) but never a correction's target:
        ordinary words such as "whole" must not pull "holes" towards them."""
        self._known = sorted({w for w in known_words if w})
        # Three-letter typos ("frm") are only corrected towards device and zone names.
        self._short_targets = sorted({w for n in joined_names for w in n.split() if len(w) >= 3})
        self._known_set = frozenset(self._known) | frozenset(exact_words)
        # "x 1 c" → "x1c": names whose spoken form has no spaces, indexed by their letters.
        self._joined = {
            name.replace(" ", ""): name
            for name in joined_names
            if " " not in name and len(name) >= 3
        }

    def correct(self, text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Return the corrected text and the (was, now) replacements made."""
        words = text.split()
        corrections: list[tuple[str, str]] = []
        words = self._join_split_names(words, corrections)
        out: list[str] = []
        for word in words:
            if word in self._known_set or len(word) < _MIN_LENGTH - 1 or word.isdigit():
                out.append(word)
                continue
            if len(word) < _MIN_LENGTH:
                match = process.extractOne(
                    word, self._short_targets, scorer=fuzz.ratio, score_cutoff=85
                )
            else:
                cutoff = 80 if len(word) < 6 else 72
                match = process.extractOne(
                    word, self._known, scorer=fuzz.ratio, score_cutoff=cutoff
                )
            if match is None:
                out.append(word)
                continue
            best = match[0]
            out.append(best)
            corrections.append((word, best))
        return " ".join(out), tuple(corrections)

    def _join_split_names(self, words: list[str], corrections: list[tuple[str, str]]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(words):
            joined = False
            for span in (3, 2):
                if i + span <= len(words):
                    candidate = "".join(words[i : i + span])
                    name = self._joined.get(candidate)
                    if name is not None and len(words[i]) <= 3:
                        corrections.append((" ".join(words[i : i + span]), name))
                        out.append(name)
                        i += span
                        joined = True
                        break
            if not joined:
                out.append(words[i])
                i += 1
        return out
