"""The polarity guard: which way the words point (on or off, lock or unlock, heat or cool,
run or stop), read from cue words and phrases, with negation taken into account.

Every device intent with an opposite sits on an axis with a sign:

    switch   light_on, power_on  +      light_off, power_off  -
    door     door_unlock         +      door_lock             -
    heat     printer_heat        +      printer_cooldown      -
    run      print_start, print_resume + print_cancel, print_pause -

``read_polarity`` finds the cues of the text; ``contradicts`` says whether a reading
points against them (a cue of the opposite sign and none of its own). A reading that
contradicts its words is never acted on: the pipeline asks instead (``pipeline.py``).

Negation: "don't leave the door unlocked" and "the spindle shouldn't be live" negate a
state, so the cue flips (lock, off). "don't unlock the door" negates the verb itself: a
prohibition, not a request for the opposite; it keeps its sign and is reported as
``prohibited`` so that nothing is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AXIS_OF: dict[str, tuple[str, int]] = {
    "light_on": ("switch", 1),
    "light_off": ("switch", -1),
    "power_on": ("switch", 1),
    "power_off": ("switch", -1),
    "door_unlock": ("door", 1),
    "door_lock": ("door", -1),
    "printer_heat": ("heat", 1),
    "printer_cooldown": ("heat", -1),
    "print_start": ("run", 1),
    "print_resume": ("run", 1),
    "print_cancel": ("run", -1),
    "print_pause": ("run", -1),
}

OPPOSITE: dict[str, str] = {
    "light_on": "light_off",
    "light_off": "light_on",
    "power_on": "power_off",
    "power_off": "power_on",
    "door_unlock": "door_lock",
    "door_lock": "door_unlock",
    "printer_heat": "printer_cooldown",
    "printer_cooldown": "printer_heat",
    "print_start": "print_cancel",
    "print_cancel": "print_start",
    "print_resume": "print_pause",
    "print_pause": "print_resume",
}
"""The pair partner of each intent: reading one as the other is an inversion."""

_HEATED = r"(?:heat|heater|heaters|heating|hotend|hot end|nozzle|bed|extruder|heated bed)"
_OFF_VERB = r"(?:kill|cut|stop|shut off|shut down|shut|turn off|switch off|drop)"

# Phrases first (their words are then no longer read one by one), strongest first.
_PHRASES: tuple[tuple[str, str, int], ...] = (
    (r"\bstop (?:heating|warming)\b", "heat", -1),
    (
        rf"\b{_OFF_VERB} (?:\S+ ){{0,3}}?(?:the |its |their )?{_HEATED}\b"
        rf"(?: (?:and|&) (?:the )?{_HEATED})?(?: off| down)?",
        "heat",
        -1,
    ),
    (rf"\b{_HEATED} (?:off|down)\b", "heat", -1),
    (
        rf"\b(?:turn|switch|put|crank|get) on (?:the |its )?{_HEATED}\b|\b{_HEATED} (?:on|up)\b",
        "heat",
        1,
    ),
    (r"\b(?:cool|cooldown|cooling|cool down)\b", "heat", -1),
    (r"\b(?:preheat|pre heat|heat up|heat|heating|warm up|warm|hot)\b", "heat", 1),
    (r"\b(?:up to|to|at) \d{2,3}\b|\b\d{2,3} degrees\b", "heat", 1),
    (r"\b(?:release|remove|undo|take off|disengage|drop) (?:the )?lock\b", "door", 1),
    (r"\blet (?:me|us|them|him|her) (?:in|into|through)\b|\bbuzz (?:me|us|them)\b", "door", 1),
    (r"\b(?:unlock|unlocked|unlatch|open up|open)\b", "door", 1),
    (r"\b(?:lock|locked|lock up|secure|secured|seal|sealed|latch)\b", "door", -1),
    (
        r"\b(?:un pause|unpause|resume|continue|carry on|keep going|pick (?:\S+ ){0,3}back up|"
        r"where it left off|restart|go again)\b",
        "run",
        1,
    ),
    (r"\b(?:pause|hold|suspend|freeze|on hold)\b", "run", -1),
    (r"\b(?:cancel|abort|terminate|scrap|abandon|kill|stop|end|for good|halt)\b", "run", -1),
    (r"\b(?:start|begin|kick off|fire off|launch|queue|run)\b", "run", 1),
    (
        r"\b(?:too dark|cant see|can not see|need (?:some )?light|light up|illuminate)\b",
        "switch",
        1,
    ),
    (
        r"\b(?:power down|shut down|shut off|shut|off|out|kill|cut|disable|de energi[sz]e)\b",
        "switch",
        -1,
    ),
    (
        r"\b(?:power up|power on|fire up|bring (?:\S+ ){0,3}up|start up|energi[sz]ed?|enable|live|"
        r"powered|give (?:\S+ ){0,3}power|on)\b",
        "switch",
        1,
    ),
)
_COMPILED = tuple((re.compile(p), axis, sign) for p, axis, sign in _PHRASES)

_NEGATION = re.compile(r"\b(?:dont|do not|doesnt|does not|shouldnt|should not|never|not|no|"
                       r"isnt|is not|arent|wont|cannot|cant|without)\b")  # fmt: skip
# "on" is a preposition more often than a switch: a cue only after a verb or a device
# word, or at the end of a clause.
_ON_CUE = re.compile(
    r"(?:\b(?:turn|switch|flip|put|get|keep|leave|have|come|back|be|stay|lights?|lamps?|"
    r"printer|machine|power|welder|laser|spindle|it|them|that|those|these)) on\b"
    r"|\bon(?: (?:please|pls|now|again|thanks|thank you|for me|right now))*$"
)


_STATE_WORDS = frozenset(
    {"locked", "unlocked", "powered", "live", "on", "off", "hot", "open", "sealed",
     "secured", "heated", "out", "warm", "running"}
)  # fmt: skip
# Words between a negation and a verb that keep it a prohibition: "don't turn off".
_VERB_FILLERS = frozenset({"please", "even", "ever", "you", "to", "turn", "switch", "flip",
                           "power", "shut", "go", "just"})  # fmt: skip


@dataclass(frozen=True)
class Cue:
    axis: str
    sign: int
    words: str
    negated: bool = False


@dataclass(frozen=True)
class Polarity:
    cues: tuple[Cue, ...]
    prohibited: bool
    """The verb itself is negated ("don't unlock the door"): nothing is to be done."""

    def signs(self, axis: str) -> set[int]:
        return {c.sign for c in self.cues if c.axis == axis}

    def direction(self, axis: str) -> int:
        """+1 or -1 when every cue of the axis agrees, else 0."""
        signs = self.signs(axis)
        return next(iter(signs)) if len(signs) == 1 else 0


CUE_WORDS = frozenset(
    """heat heating preheat warm cool cooldown cooling heaters heater hotend unlock unlocked
    lock locked secure seal latch open resume continue unpause pause hold suspend freeze
    cancel abort terminate scrap abandon stop start begin launch queue kill shut power
    disable enable energise energize release remove undo restart""".split()  # noqa: SIM905
)
_INFLECTIONS = ("d", "ed", "s", "es", "ing", "ning", "ped", "ping", "er", "ers")


def fix_cue_typos(text: str) -> str:
    """Typos of cue words set right ("lcok" → "lock", "cancle" → "cancel", "trun" →
    "turn") and nothing else: a general corrector would pull "paused" to "pause" and
    "release" to "please", and polarity is read from exactly these words."""
    out = []
    for word in text.split():
        out.append(_cue_typo(word) or word)
    return " ".join(out)


def _cue_typo(word: str) -> str | None:
    if len(word) < 4 or word in CUE_WORDS or word == "turn":
        return None
    if any(word == cue + end for cue in CUE_WORDS for end in _INFLECTIONS):
        return None
    for cue in (*sorted(CUE_WORDS), "turn"):
        if len(cue) == len(word) and sorted(cue) == sorted(word) and cue[0] in word[:2]:
            return cue  # letters swapped
        if len(word) >= 6 and abs(len(cue) - len(word)) <= 1 and _one_edit(word, cue):
            return cue
    return None


def _one_edit(a: str, b: str) -> bool:
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def read_polarity(text: str) -> Polarity:
    """The cues of a normalized, corrected utterance."""
    # A span is read once per axis: "kill" is both a stop (a print) and an off (a light).
    taken = {axis: [False] * len(text) for _, axis, _ in _COMPILED}
    cues: list[Cue] = []
    prohibited = False
    for pattern, axis, sign in _COMPILED:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(taken[axis][start:end]):
                continue
            words = match.group(0)
            if words == "on" and not _is_on_cue(text, start):
                continue
            for i in range(start, end):
                taken[axis][i] = True
            negation = _negation_before(text, start)
            if negation == "verb" and words.split()[-1] in _STATE_WORDS:
                negation = "state"  # "not powered", "not locked": a state, not a verb
            if negation is None:
                cues.append(Cue(axis, sign, words))
            elif negation == "verb":
                prohibited = True
                cues.append(Cue(axis, sign, words, negated=True))
            else:
                cues.append(Cue(axis, -sign, words, negated=True))
    return Polarity(tuple(cues), prohibited)


def _is_on_cue(text: str, start: int) -> bool:
    return any(match.start() <= start < match.end() for match in _ON_CUE.finditer(text))


def _negation_before(text: str, start: int) -> str | None:
    """'verb' when a negation stands right before the cue ("don't unlock"), 'state' when
    it negates the clause the cue is in ("don't leave the door unlocked"), else None."""
    clause_start = max(text.rfind(" but ", 0, start), text.rfind(" and ", 0, start), 0)
    before = text[clause_start:start].split()
    for i in range(len(before) - 1, max(-1, len(before) - 6), -1):
        window = " ".join(before[i:])
        match = _NEGATION.match(window)
        if match is None:
            continue
        between = window[match.end() :].split()
        filler = [w for w in between if w not in _VERB_FILLERS]
        return "verb" if not filler else "state"
    return None


def contradicts(intent: str, polarity: Polarity) -> bool:
    """The words point the other way: a cue of the opposite sign on the intent's axis,
    and none of its own."""
    axis_sign = AXIS_OF.get(intent)
    if axis_sign is None:
        return False
    axis, sign = axis_sign
    signs = polarity.signs(axis)
    return -sign in signs and sign not in signs


def allowed(intent: str, polarity: Polarity) -> bool:
    """Whether ``intent`` may be chosen at all given the cues (the semantic stage's
    filter; the final guard is ``contradicts``)."""
    return not contradicts(intent, polarity)
