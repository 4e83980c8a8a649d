"""What was heard: the reading of a spoken turn the conversation acts on.

A recogniser gives its best reading of the speech and the next-best ones (``Transcript.
alternatives``). Its best is often a near miss of a command ("resume the forum" for
"resume the voron", "bought the print on the bambu" for "abort the print …") while a
next-best is the command itself. So the readings are understood in order and the first
one that is a whole device request (``Understanding.actionable``) is the turn's; when none
is, the best reading stands and is understood as any typed text is (a question, a
clarification, "I didn't understand").

Two rules keep this from guessing:

- **Polarity.** When another reading nearly as likely (within ``polarity_margin``) asks
  for the opposite of the chosen one on the same device ("lock the door" / "unlock the
  door"), the speech did not say which: the turn becomes the clarifying question between
  the two, never an action.
- **A question stays a question.** When the best reading asks something ("is the cnc
  door open?"), a next-best reading is taken only for a read (a status, a sensor, a
  camera), never for an action ("open the cnc door").
- **Only what was heard.** Every reading is the recogniser's own; the only rewriting is
  of what a recogniser predictably gets wrong in file names ("bracket dot decode",
  "bracket.g code" for "bracket.gcode", "printclip.gcode" for "print clip.gcode",
  ``spoken_file_names``). A reading is never made up from the lab's vocabulary.

Pure: the caller understands a reading (``understand``) with the conversation's context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from kittylab.conversation.ports import Alternative
from kittylab.conversation.understanding import signals
from kittylab.conversation.understanding.grammar import READ_ONLY_INTENTS
from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.polarity import OPPOSITE
from kittylab.conversation.understanding.semantic import clarifying_question
from kittylab.conversation.understanding.types import Understanding

# "bracket dot decode", "bracket.g code", "bracket dot, gee code", "spacer.ge code":
# "dot" (or a full stop), then up to four letters run into or before "code".
_GCODE = re.compile(r"(?<=\w)(?:\s*\.\s*|\s+dot,?\s+)(?:[a-z]{1,4}[\s-]?)?code\b", re.IGNORECASE)
_BGCODE = re.compile(r"(?<=\w)(?:\s*\.\s*|\s+dot,?\s+)b[\s-]?g[\s-]?code\b", re.IGNORECASE)
# "printclip.gcode on the bambu": the verb run into the file's name, at the very start.
_PRINT_GLUED = re.compile(r"^(print)(?=[a-z]{2,}\.(?:b?gcode|3mf|stl)\b)", re.IGNORECASE)
_POLITE = re.compile(r"^(can|could|would|will)\b")


POLARITY_MARGIN = 0.25
"""Readings of a command and of its opposite whose likelihoods are closer than this (mean
log-probability per token) were both heard. Whisper base's next-best readings of a clearly
said command trail its best by 0.3 and more."""


@dataclass(frozen=True)
class Heard:
    text: str
    """The reading the turn runs on."""
    understanding: Understanding
    readings: tuple[str, ...]
    """Every reading considered, most likely first (after ``spoken_file_names``)."""
    chosen: int
    """Which of ``readings`` is ``text``."""


def spoken_file_names(text: str) -> str:
    """A print file's name as a recogniser writes it when it is said: "bracket dot decode",
    "bracket.g code" → "bracket.gcode"; "… dot b g code" → "….bgcode"; and the verb a
    recogniser ran into the name at the start split off again ("printclip.gcode on …" →
    "print clip.gcode on …")."""
    text = _BGCODE.sub(".bgcode", text.strip())
    text = _GCODE.sub(lambda m: m.group(0) if m.group(0).endswith("bgcode") else ".gcode", text)
    return _PRINT_GLUED.sub(r"\1 ", text)


def choose(
    best: str,
    alternatives: Sequence[Alternative],
    understand: Callable[[str], Understanding],
    *,
    polarity_margin: float = POLARITY_MARGIN,
) -> Heard:
    """The reading to act on, with its understanding: of ``best`` and ``alternatives``
    (most likely first), the first actionable one, else ``best``; a clarifying question
    when readings within ``polarity_margin`` of each other disagree on polarity."""
    texts = tuple(spoken_file_names(t) for t in (best, *(a.text for a in alternatives)))
    gaps = (0.0, *(a.gap for a in alternatives))
    understood: list[Understanding | None] = [None] * len(texts)

    def reading(i: int) -> Understanding:
        got = understood[i]
        if got is None:
            got = understood[i] = understand(texts[i])
        return got

    asked = _is_question(texts[0])
    chosen = next(
        (
            i
            for i in range(len(texts))
            if reading(i).actionable
            and (i == 0 or not asked or reading(i).intent in READ_ONLY_INTENTS)
        ),
        0,
    )
    u = reading(chosen)
    opposite = OPPOSITE.get(u.intent)
    if u.actionable and opposite is not None:
        for i in range(len(texts)):
            if abs(gaps[i] - gaps[chosen]) > polarity_margin:
                continue
            other = reading(i)
            if other.intent == opposite and other.device == u.device:
                u = replace(
                    u,
                    problem=clarifying_question(u.intent, opposite, u.device),
                    clarify=(u.intent, opposite),
                    factors={**u.factors, "heard_both_ways": 1.0},
                )
                break
    return Heard(text=texts[chosen], understanding=u, readings=texts, chosen=chosen)


def _is_question(text: str) -> bool:
    clean = normalize(text)
    return (text.rstrip().endswith("?") or signals.is_question(clean)) and not _POLITE.match(clean)
