"""Text as the grammar sees it: lower case, punctuation gone, numbers in words turned into
digits ("two hundred and ten" → "210", "thirty percent" → "30 percent") and unit spellings
unified ("%" → "percent", "°C" → "degrees")."""

from __future__ import annotations

import re
import unicodedata

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_ONE_AS_PRONOUN = frozenset({"this", "that", "the", "which", "other", "each", "every", "no"})
_NUMBER_WORDS = {*_UNITS, *_TENS, "hundred", "a", "and"}

_SYMBOLS = [
    (re.compile(r"(\d)\s*%"), r"\1 percent "),
    (re.compile(r"\s*°\s*c?\b"), " degrees "),
    (re.compile(r"(?<![a-z\d])(\d{2,})\s*c\b"), r"\1 degrees "),
    (re.compile(r"\bper cent\b"), "percent"),
    (re.compile(r"\bdegrees? (?:celsius|centigrade|c)\b"), "degrees"),
    (re.compile(r"\bdeg\b"), "degrees"),
]
_KEEP = re.compile(r"[^\w\s.\-]")
_CELSIUS = re.compile(r"\b(\d{2,}) c\b")  # "two hundred c" once it is "200 c"
_POINT = re.compile(r"\b(\d+) point (\d+)\b")  # "two point four" → "2.4"
_HYPHEN_WORDS = re.compile(r"(?<=[a-z])-(?=[a-z])")


def normalize(text: str) -> str:
    """The normal form of an utterance for matching; never raises."""
    clean = unicodedata.normalize("NFKC", text).casefold()
    clean = "".join(ch if ch.isprintable() else " " for ch in clean)
    # "what's" → "whats", "don't" → "dont": contractions stay one word.
    clean = re.sub(r"(?<=[a-z])['’](?=[a-z])", "", clean)
    for pattern, replacement in _SYMBOLS:
        clean = pattern.sub(replacement, clean)
    clean = _KEEP.sub(" ", clean)
    clean = _HYPHEN_WORDS.sub(" ", clean)
    # A full stop ends a sentence unless it sits inside a number or a name ("2.4").
    clean = re.sub(r"\.(?!\w)|(?<!\w)\.", " ", clean)
    words = " ".join(_words_to_numbers(clean.split()))
    return _CELSIUS.sub(r"\1 degrees", _POINT.sub(r"\1.\2", words))


def _words_to_numbers(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        value, used = _read_number(words, i)
        if used == 1 and words[i] == "one" and i and words[i - 1] in _ONE_AS_PRONOUN:
            used = 0  # "that one", "the other one"
        if used:
            out.append(str(value))
            i += used
        else:
            out.append(words[i])
            i += 1
    return out


def _read_number(words: list[str], start: int) -> tuple[int, int]:
    """Read a number written in words at ``start``: (value, words used) or (0, 0)."""
    total = 0
    current = 0
    used = 0
    seen_digit_word = False
    i = start
    while i < len(words) and words[i] in _NUMBER_WORDS:
        word = words[i]
        if word == "a":
            # "a hundred" only; a bare "a" is an article.
            if i + 1 < len(words) and words[i + 1] == "hundred" and not seen_digit_word:
                current = 1
                i += 1
                continue
            break
        if word == "and":
            # "two hundred and ten": only inside a number that has a hundred already.
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if (total or current >= 100) and (nxt in _UNITS or nxt in _TENS):
                i += 1
                continue
            break
        if word == "hundred":
            current = max(current, 1) * 100
        elif word in _TENS:
            if current % 100 >= 10 and seen_digit_word:
                break
            if 0 < current < 10 and total == 0:
                # "two forty" is 240, as temperatures are said, not 42.
                current *= 100
            current += _TENS[word]
        else:
            if current % 10 and seen_digit_word and current % 100 < 20:
                break
            if word == "oh" and not seen_digit_word:
                break
            current += _UNITS[word]
        seen_digit_word = True
        i += 1
        used = i - start
    total += current
    if not seen_digit_word:
        return 0, 0
    return total, used
