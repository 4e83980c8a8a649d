"""Is this a question about the lab's own state, and about what? (Pure.)

``recognize`` reads a question ("how warm is it by the printers", "is the CNC door open",
"who's in the welding bay", "anything waiting for me to approve") against the lab's
vocabulary and its people and returns a ``StateQuestion``: the kind of answer, the devices
and zone it is about, the aspects asked for (a printer's nozzle, time left …) and the
person it is about. ``None`` when the text is not such a question: it then goes on to the
tiers that answer in words (mcp, frontier).

It is deliberately a separate reader from the grammar: the grammar recognises requests to
act; this recognises questions to answer, from cue words and the lab's names. It never
produces an action: whatever it reads, the answer only reads stored state (and, for a
stale reading, asks the device for a read through the ordinary read intents).

The order of the checks is what keeps readings apart: approvals, the last job, the queue
and locks are told by words no device question uses; then what the named devices are
(a named device beats a kind word, a kind word beats a zone); then who is where.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.vocabulary import DeviceEntry, LabVocabulary, spoken_form
from kittylab.domain.enums import DeviceKind


class AnswerKind(StrEnum):
    SENSOR_READING = "sensor_reading"
    PRINTER_STATUS = "printer_status"
    DOOR_STATE = "door_state"
    LOCK_HOLDERS = "lock_holders"
    LIGHT_STATE = "light_state"
    POWER_STATE = "power_state"
    PRESENCE = "presence"
    PRINT_QUEUE = "print_queue"
    LAST_JOB = "last_job"
    PENDING_APPROVALS = "pending_approvals"
    CAMERA = "camera"


DEVICE_KINDS: dict[AnswerKind, DeviceKind] = {
    AnswerKind.SENSOR_READING: DeviceKind.SENSOR,
    AnswerKind.PRINTER_STATUS: DeviceKind.PRINTER,
    AnswerKind.DOOR_STATE: DeviceKind.DOOR,
    AnswerKind.LIGHT_STATE: DeviceKind.LIGHT,
    AnswerKind.POWER_STATE: DeviceKind.POWER,
    AnswerKind.CAMERA: DeviceKind.CAMERA,
}
"""The answers about devices of one kind."""

_KIND_ANSWER = {kind: answer for answer, kind in DEVICE_KINDS.items()}


@dataclass(frozen=True)
class Person:
    """Someone of the lab, as a question may name them."""

    user_id: UUID
    username: str
    display_name: str

    @property
    def names(self) -> tuple[str, ...]:
        first = spoken_form(self.display_name).split()
        return tuple(dict.fromkeys(n for n in (self.username.casefold(), *first[:1]) if n))


@dataclass(frozen=True)
class StateQuestion:
    kind: AnswerKind
    devices: tuple[DeviceEntry, ...] = ()
    """The devices the answer is about (for device kinds: resolved from the names, the
    zone or the kind; empty for the other kinds unless one was named)."""
    zone: str | None = None
    """The zone named (or the named device's zone); None: the whole lab."""
    aspects: frozenset[str] = frozenset()
    """What was asked of the devices: sensor measures, or a printer's ``nozzle``, ``bed``,
    ``chamber``, ``progress``, ``time_left``, ``file``; empty: everything."""
    person: Person | None = None
    """The person the question is about, when it names one."""
    about_asker: bool = False
    """ "my", "me", "I": the question is about the person asking."""
    named_devices: bool = False
    """The devices were named (not derived from a zone or a kind word)."""
    factors: dict[str, float] = field(default_factory=dict)


# -- cue words ------------------------------------------------------------------------

_APPROVAL = re.compile(
    r"\b(approv\w*|sign ?offs?|signoff|countersign\w*|authori[sz]\w*|pending)\b"
    r"|\brequests? (?:\w+ ){0,6}(waiting|pending)\b|\bwaiting (on|for) me\b"
)
_LAST = re.compile(r"\b(last|previous|latest|most recent|recent)\b")
_JOB_WORD = re.compile(r"\b(print|prints|printed|job|jobs|printing)\b")
_QUEUE = re.compile(
    r"\b(queue|queued|queuing|queueing|backlog|lined up|up next|next)\b"
    r"|\bjobs? (waiting|pending|left)\b|\bwaiting to (be )?print"
)
_LOCK_NOUN = re.compile(
    r"\b(lock|locks|lockout|lockouts|tagout|tagged out|reserved|reservation)\b"
    r"|\b(holds?|holding|held)\b"
)
_LOCKED = re.compile(r"\b(locked|unlocked)\b")
_WHO = re.compile(r"\b(who|whos|whom|whose)\b")
_DOOR_CUE = re.compile(
    r"\b(locked|unlocked|lock|unlock|open|opened|closed|shut|secure|secured|ajar|"
    r"walk in|walk into|get in|get into)\b"
)
_LIGHT_CUE = re.compile(r"\b(lit|dark|bright|brightness|dim|dimmed|lights?|lamps?)\b")
_CAMERA_CUE = re.compile(
    r"\b(see|look|looking|show|view|watch|picture|snapshot|image|photo|camera|cam|feed)\b"
)
_PRESENCE_CUE = re.compile(
    r"\b(who|whos|anyone|anybody|someone|somebody|people|persons?|empty|occupied|"
    r"checked in|check(ed)? into|present|inside|where)\b"
)
_PRINTING_CUE = re.compile(
    r"\b(printing|printer|printers|print|busy|idle|free|paused|status|doing|progress|"
    r"done|finish|finished|eta|left)\b"
)
_HEATER = {
    "nozzle": re.compile(r"\b(nozzle|hotend|hot end|extruder|head)\b"),
    "bed": re.compile(r"\b(bed|plate|build plate)\b"),
    "chamber": re.compile(r"\b(chamber|enclosure)\b"),
}
_TEMPERATURE = re.compile(r"\b(temp|temps|temperature|temperatures|hot|warm|heated|heating|heat)\b")
_PROGRESS = re.compile(
    r"\b(progress|percent|percentage|far|along|how much|close|complete|completed)\b"
)
_TIME_LEFT = re.compile(
    r"\b(eta|how long|time left|remaining|until|till|when will|when is|when does|done by)\b"
)
_FILE = re.compile(r"\b(file|what is \w+ printing|whats \w+ printing|printing what|gcode)\b")
_STATE = re.compile(
    r"\b(printing|busy|idle|free|paused|status|state|doing|done|finish|finished|running|"
    r"heating|going|ready|working|stopped|failed)\b"
)
_MEASURES: dict[str, re.Pattern[str]] = {
    "temperature": re.compile(
        r"\b(temp|temps|temperature|temperatures|degrees|warm|warmer|hot|hotter|cold|colder|"
        r"cool|chilly|freezing|heat)\b"
    ),
    "humidity": re.compile(r"\b(humid|humidity|damp|dry|wet|moist|moisture|rh)\b"),
    "air_quality": re.compile(
        r"\b(air|fume|fumes|smoke|smoky|dust|dusty|voc|vocs|particulates?|pm2.5|breathe|"
        r"breathable)\b"
    ),
}
_ABOUT_IT = re.compile(r"\b(is it|it is|its|is there|in here|around here)\b")
_ASKER = re.compile(r"\b(i|me|my|mine|myself)\b")
_EVERY = re.compile(r"\b(all|any|every|which|anything|everything|the lab|whole lab)\b")
# Not questions about the present state: advice, explanations, how-tos.
_NOT_STATE = re.compile(
    r"\b(why|explain|should|recommend|recommended|ideal|typical|typically|usually|normally|"
    r"melting|melt|how do i|how to|best|difference)\b"
)
_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")
_KIND_WORDS: dict[DeviceKind, tuple[str, ...]] = {
    DeviceKind.PRINTER: ("printer", "printers", "3d printer", "3d printers"),
    DeviceKind.LIGHT: ("light", "lights", "lamp", "lamps", "lighting"),
    DeviceKind.DOOR: ("door", "doors"),
    DeviceKind.CAMERA: ("camera", "cameras", "cam", "cams", "webcam"),
    DeviceKind.SENSOR: ("sensor", "sensors"),
    DeviceKind.POWER: ("machine", "machines"),
}
# Words of a zone's name that also name other things ("print" is a verb, "lab" the lab).
_NOT_ZONE_WORDS = frozenset(
    {"print", "lab", "room", "bay", "area", "zone", "shop", "bench", "the"}
    | {w for words in _KIND_WORDS.values() for w in words}
)


@dataclass(frozen=True)
class _Mentions:
    devices: tuple[DeviceEntry, ...]
    zones: tuple[str, ...]
    kinds: tuple[DeviceKind, ...]
    people: tuple[Person, ...]
    rest: str
    """The text with every name taken out, for the cue words."""


def recognize(
    text: str,
    vocabulary: LabVocabulary,
    people: Sequence[Person] = (),
    *,
    context_device: str | None = None,
    context_zone: str | None = None,
) -> StateQuestion | None:
    """The state question ``text`` asks, or None (see the module doc)."""
    clean = _clean(text)
    if not clean or _NOT_STATE.search(clean):
        return None
    found = _mentions(clean, vocabulary, people)
    rest = found.rest
    about_asker = _ASKER.search(rest) is not None
    person = found.people[0] if found.people else None
    zone = found.zones[0] if found.zones else None
    if found.devices and zone is None:
        zone = found.devices[0].zone
    base: dict[str, Any] = {"person": person, "about_asker": about_asker}

    # 1. Words no device question uses.
    if _APPROVAL.search(rest):
        return StateQuestion(
            AnswerKind.PENDING_APPROVALS,
            devices=found.devices,
            zone=zone,
            named_devices=bool(found.devices),
            **base,
        )
    if _LAST.search(rest) and _JOB_WORD.search(rest):
        return _job_question(AnswerKind.LAST_JOB, found, zone, vocabulary, base)
    if _QUEUE.search(rest) and (
        _JOB_WORD.search(rest) or found.devices or DeviceKind.PRINTER in found.kinds
    ):
        return _job_question(AnswerKind.PRINT_QUEUE, found, zone, vocabulary, base)
    if _is_lock_question(rest, found):
        return StateQuestion(
            AnswerKind.LOCK_HOLDERS,
            devices=found.devices,
            zone=zone,
            named_devices=bool(found.devices),
            **base,
        )

    # 2. Devices: named ones first, then a kind word, then cues with a zone.
    if found.devices:
        return _about_devices(found.devices, rest, zone, vocabulary, named=True)
    if not found.zones and not found.kinds and not found.people and _ABOUT_IT.search(rest):
        # "is it printing", "how warm is it in there": the conversation's device or zone.
        last = vocabulary.device(context_device) if context_device else None
        heaters = any(cue.search(rest) for cue in _HEATER.values())
        about_room = last is not None and last.kind is not DeviceKind.SENSOR and not heaters
        if last is not None and not (about_room and _measure_cues(rest)):
            return _about_devices((last,), rest, last.zone, vocabulary, named=True)
        zone = zone or context_zone
    kind = _kind_asked(rest, found, zone)
    if kind is not None:
        if kind is DeviceKind.SENSOR and zone is None and DeviceKind.PRINTER in found.kinds:
            # "by the printers": the room the printers stand in.
            rooms = {d.zone for d in vocabulary.of_kind(DeviceKind.PRINTER)}
            zone = next(iter(rooms)) if len(rooms) == 1 else None
        return _about_kind(kind, rest, zone, vocabulary)

    # 3. People.
    if person is not None and (zone is not None or re.search(r"\b(here|in|where)\b", rest)):
        return StateQuestion(AnswerKind.PRESENCE, zone=zone, **base)
    if _PRESENCE_CUE.search(rest) and (
        zone is not None or person is not None or _EVERY.search(rest) or " in " in f" {rest} "
    ):
        return StateQuestion(AnswerKind.PRESENCE, zone=zone, **base)
    return None


_QUESTION_FORM = re.compile(
    r"^(is|are|was|were|has|have|had|did|does|do|what|whats|which|who|whos|how|hows|when|"
    r"where|wheres|anything|anyone|anybody)\b"
)
_REQUEST_FORM = re.compile(
    r"^(please |kitty |hey )*((can|could|would|will|wont|do) (you|u)|would you mind|"
    r"(can|could|may) (i|we) (get|have))\b"
)


def asks_about_state(text: str) -> bool:
    """Whether a sentence is shaped as a question about how things are ("is the CNC door
    open", "cnc door locked or not?"), not as a request ("can you lock the CNC door")."""
    clean = _clean(text)
    if _REQUEST_FORM.search(clean):
        return False
    return bool(_QUESTION_FORM.search(clean)) or text.rstrip().endswith("?")


def lab_names_in(text: str, vocabulary: LabVocabulary) -> tuple[tuple[str, ...], str | None]:
    """The devices (external ids) and the first zone ``text`` names: what makes an answer
    depend on the lab's live state (``routing.cache.asker_scope``)."""
    found = _mentions(_clean(text), vocabulary, ())
    return tuple(sorted(d.external_id for d in found.devices)), (
        found.zones[0] if found.zones else None
    )


def _clean(text: str) -> str:
    clean = normalize(_POSSESSIVE.sub("", text))
    # Names are matched with their separators as spaces: "voron-24" is "voron 24".
    return " ".join(clean.replace("-", " ").replace("_", " ").split())


def _mentions(clean: str, vocabulary: LabVocabulary, people: Sequence[Person]) -> _Mentions:
    """Devices, zones, kind words and people the text names, longest names first, each
    word used by one name only ("the laser room door" is the door, not the laser)."""
    names: list[tuple[str, str, object]] = []
    for device in vocabulary.devices:
        for name in device.names:
            names.append((name, "device", device))
            squeezed = name.replace(" ", "")
            if squeezed != name:
                names.append((squeezed, "device", device))  # "farmlights", "mk4" alike
    for zone_name, words in _zone_names(vocabulary).items():
        for name in words:
            names.append((name, "zone", zone_name))
    for kind, words in _KIND_WORDS.items():
        for name in words:
            names.append((name, "kind", kind))
    for person in people:
        for name in person.names:
            names.append((name, "person", person))
    names.sort(key=lambda n: len(n[0]), reverse=True)
    padded = f" {clean} "
    devices: list[DeviceEntry] = []
    zones: list[str] = []
    kinds: list[DeviceKind] = []
    found_people: list[Person] = []
    for name, what, value in names:
        needle = f" {name} "
        while needle in padded:
            padded = padded.replace(needle, " " + "\x00" * len(name) + " ", 1)
            if what == "device" and isinstance(value, DeviceEntry) and value not in devices:
                devices.append(value)
            elif what == "zone" and isinstance(value, str) and value not in zones:
                zones.append(value)
            elif what == "kind" and isinstance(value, DeviceKind) and value not in kinds:
                kinds.append(value)
            elif what == "person" and isinstance(value, Person) and value not in found_people:
                found_people.append(value)
    rest = " ".join(w for w in padded.split() if "\x00" not in w)
    # Kind words stay in the rest as cues ("lights on"), so put them back.
    kind_words = {w for words in _KIND_WORDS.values() for w in words}
    rest_words = [w for w in clean.split() if w in kind_words or w in rest.split()]
    return _Mentions(
        tuple(devices), tuple(zones), tuple(kinds), tuple(found_people), " ".join(rest_words)
    )


def _zone_names(vocabulary: LabVocabulary) -> dict[str, tuple[str, ...]]:
    """Each zone's spoken names, plus each word of a zone's name that no other zone has
    and that names nothing else ("farm" for the print farm)."""
    words_of = {z.name: set(spoken_form(z.name).split()) for z in vocabulary.zones}
    out: dict[str, tuple[str, ...]] = {}
    for zone in vocabulary.zones:
        extra = [
            w
            for w in words_of[zone.name]
            if w not in _NOT_ZONE_WORDS
            and len(w) > 2
            and sum(w in other for other in words_of.values()) == 1
        ]
        out[zone.name] = tuple(dict.fromkeys((*zone.names, *extra)))
    return out


def _is_lock_question(rest: str, found: _Mentions) -> bool:
    """Who holds a KittyLab lock (lockout) on equipment: "who holds the lock on the
    spindle", "what locks are held", "which devices does Erin have locked". A door's own
    lock ("is the door locked") is the door's state, not this."""
    if not _LOCK_NOUN.search(rest):
        return bool(_LOCKED.search(rest) and found.people and not _door_only(found))
    return not _door_only(found) or bool(
        re.search(r"\b(who|whos|holds?|holding|held|locks)\b", rest)
    )


def _door_only(found: _Mentions) -> bool:
    named = {d.kind for d in found.devices}
    return (named == {DeviceKind.DOOR}) or (not named and DeviceKind.DOOR in found.kinds)


def _job_question(
    kind: AnswerKind,
    found: _Mentions,
    zone: str | None,
    vocabulary: LabVocabulary,
    base: dict[str, Any],
) -> StateQuestion:
    printers = tuple(d for d in found.devices if d.kind is DeviceKind.PRINTER)
    return StateQuestion(
        kind,
        devices=printers,
        zone=zone,
        named_devices=bool(printers),
        **base,
    )


def _measure_cues(rest: str) -> frozenset[str]:
    return frozenset(m for m, cue in _MEASURES.items() if cue.search(rest))


def _printer_aspects(rest: str) -> frozenset[str]:
    aspects = {heater for heater, cue in _HEATER.items() if cue.search(rest)}
    if not aspects and _TEMPERATURE.search(rest):
        aspects = {"nozzle", "bed"}
    if _PROGRESS.search(rest):
        aspects.add("progress")
    if _TIME_LEFT.search(rest):
        aspects.add("time_left")
    if _FILE.search(rest) or re.search(r"\bwhat\b.*\bprinting\b", rest):
        aspects.add("file")
    if aspects and _STATE.search(rest):
        aspects.add("state")
    return frozenset(aspects)


def _about_devices(
    devices: tuple[DeviceEntry, ...],
    rest: str,
    zone: str | None,
    vocabulary: LabVocabulary,
    *,
    named: bool,
) -> StateQuestion | None:
    kinds = {d.kind for d in devices}
    if len(kinds) > 1:
        # "is the bed clear on the printers, check the farm camera": the cue decides.
        preferred = _kind_by_cue(rest, kinds)
        devices = tuple(d for d in devices if d.kind is preferred)
    kind = devices[0].kind
    answer = _KIND_ANSWER[kind]
    aspects: frozenset[str] = frozenset()
    if kind is DeviceKind.PRINTER:
        aspects = _printer_aspects(rest)
    elif kind is DeviceKind.SENSOR:
        aspects = _measure_cues(rest) & frozenset(m for d in devices for m in d.measures)
    return StateQuestion(answer, devices=devices, zone=zone, aspects=aspects, named_devices=named)


def _kind_by_cue(rest: str, kinds: Iterable[DeviceKind]) -> DeviceKind:
    order = [
        (DeviceKind.CAMERA, _CAMERA_CUE),
        (DeviceKind.DOOR, _DOOR_CUE),
        (DeviceKind.SENSOR, re.compile("|".join(p.pattern for p in _MEASURES.values()))),
        (DeviceKind.PRINTER, _PRINTING_CUE),
        (DeviceKind.LIGHT, _LIGHT_CUE),
    ]
    present = set(kinds)
    for kind, cue in order:
        if kind in present and cue.search(rest):
            return kind
    return sorted(present, key=lambda k: k.value)[0]


def _kind_asked(rest: str, found: _Mentions, zone: str | None) -> DeviceKind | None:
    """The kind of device a question names no device of is about: by a kind word, or by
    cue words with a zone ("is it lit in the welding bay", "can I see the laser room")."""
    kinds = set(found.kinds)
    measures = _measure_cues(rest)
    heaters = any(cue.search(rest) for cue in _HEATER.values())
    if DeviceKind.PRINTER in kinds and measures and not heaters and not _STATE.search(rest):
        # "how warm is it by the printers": the room, not the printers' heaters.
        return DeviceKind.SENSOR
    if kinds:
        return _kind_by_cue(rest, kinds) if len(kinds) > 1 else next(iter(kinds))
    if measures and (zone is not None or _ABOUT_IT.search(rest)):
        return DeviceKind.SENSOR
    if zone is None:
        if re.search(r"\b(anything|anyone|something) (printing|print)\b", rest):
            return DeviceKind.PRINTER
        return None
    if _CAMERA_CUE.search(rest) and not _PRESENCE_CUE.search(rest):
        return DeviceKind.CAMERA
    if _DOOR_CUE.search(rest):
        return DeviceKind.DOOR
    if _LIGHT_CUE.search(rest):
        return DeviceKind.LIGHT
    if re.search(r"\b(printing|printer|printers)\b", rest):
        return DeviceKind.PRINTER
    return None


def _about_kind(
    kind: DeviceKind, rest: str, zone: str | None, vocabulary: LabVocabulary
) -> StateQuestion | None:
    pool = [d for d in vocabulary.of_kind(kind) if zone is None or d.zone == zone]
    aspects: frozenset[str] = frozenset()
    if kind is DeviceKind.SENSOR:
        measures = _measure_cues(rest)
        measuring = [d for d in pool if not measures or measures & set(d.measures)]
        if not measuring and zone is None:
            return None
        pool = measuring or pool
        if zone is None and len({d.zone for d in pool}) > 1 and not _EVERY.search(rest):
            return None  # "how warm is it" with no zone and sensors in several rooms
        aspects = measures & frozenset(m for d in pool for m in d.measures)
    elif kind is DeviceKind.PRINTER:
        aspects = _printer_aspects(rest)
    if not pool:
        return None
    rooms = {d.zone for d in pool}
    return StateQuestion(
        _KIND_ANSWER[kind],
        devices=tuple(pool),
        zone=zone if zone is not None else (next(iter(rooms)) if len(rooms) == 1 else None),
        aspects=aspects,
        named_devices=False,
    )
