"""Slots for the semantic stage, read off the words the way the grammar reads them: which
device (or zone) an utterance names, and its numbers and file.

``mask`` replaces every device and zone the text names by a word for its kind ("the voron"
→ "the printer", "the cnc room" → "the room"), so that the sentence encoder compares what
is asked, not which machine: exemplars are written with the same words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kittylab.conversation.understanding.templates import KIND_WORDS, MATERIALS
from kittylab.conversation.understanding.vocabulary import DeviceEntry, LabVocabulary
from kittylab.domain.enums import DeviceKind

KIND_PHRASE: dict[DeviceKind, str] = {
    DeviceKind.PRINTER: "printer",
    DeviceKind.LIGHT: "lights",
    DeviceKind.DOOR: "door",
    DeviceKind.POWER: "machine",
    DeviceKind.CAMERA: "camera",
    DeviceKind.SENSOR: "sensor",
}
ZONE_WORD = "room"
# Zone words that are also ordinary words of requests: never read as a zone on their own.
_NOT_A_ZONE = frozenset({"print", "room", "bay", "area", "zone", "lab", "shop"})
_FILE = re.compile(r"(?<![\w.])[\w\-]+\.(?:gcode|gco|g|bgcode|3mf)\b")


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    device: DeviceEntry | None
    zone: str | None


@dataclass(frozen=True)
class Slots:
    masked: str
    devices: tuple[DeviceEntry, ...]
    zones: tuple[str, ...]
    kinds: frozenset[DeviceKind]
    """Kinds the words name by a kind word ("the lights", "a photo" is not one)."""


_NAMES_CACHE: dict[str, list[tuple[str, DeviceEntry | None, str | None]]] = {}


def _names(vocabulary: LabVocabulary) -> list[tuple[str, DeviceEntry | None, str | None]]:
    """Built once per vocabulary (its fingerprint); read on every utterance."""
    key = vocabulary.fingerprint
    cached = _NAMES_CACHE.get(key)
    if cached is None:
        cached = _NAMES_CACHE[key] = _build_names(vocabulary)
        while len(_NAMES_CACHE) > 8:
            _NAMES_CACHE.pop(next(iter(_NAMES_CACHE)))
    return cached


def _build_names(vocabulary: LabVocabulary) -> list[tuple[str, DeviceEntry | None, str | None]]:
    names: list[tuple[str, DeviceEntry | None, str | None]] = []
    for device in vocabulary.devices:
        for name in device.names:
            names.append((name, device, None))
            spaced = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", name).replace(".", " ")
            names.append((" ".join(spaced.split()), device, None))
        names.append((device.external_id, device, None))
    words: dict[str, set[str]] = {}
    for zone in vocabulary.zones:
        for name in zone.names:
            names.append((name, None, zone.name))
        for word in zone.name.replace("-", " ").split():
            words.setdefault(word, set()).add(zone.name)
    # A zone's distinctive word alone ("the farm", "the welding bay" → "welding").
    for word, zones in words.items():
        if len(zones) == 1 and word not in _NOT_A_ZONE and len(word) >= 3:
            names.append((word, None, next(iter(zones))))
    # Longest first, so "laser room" is the zone before "laser" is the cutter.
    return sorted(set(names), key=lambda n: (-len(n[0]), n[0]), reverse=False)


def read_slots(text: str, vocabulary: LabVocabulary) -> Slots:
    """``text`` is normalized and corrected."""
    padded = f" {text} "
    taken = [False] * len(padded)
    mentions: list[Mention] = []
    for name, device, zone in _names(vocabulary):
        needle = f" {name} "
        start = padded.find(needle)
        while start != -1:
            s, e = start + 1, start + 1 + len(name)
            if not any(taken[s:e]):
                for i in range(s, e):
                    taken[i] = True
                mentions.append(Mention(s, e, device, zone))
            start = padded.find(needle, start + 1)
    mentions.sort(key=lambda m: m.start)
    out = []
    cursor = 0
    for m in mentions:
        out.append(padded[cursor : m.start])
        if m.device is not None:
            # "the farm lights" → "the lights", "prusa" → "the printer".
            before = padded[: m.start].split()
            article = "" if before and before[-1] in ("the", "my", "our", "a", "its") else "the "
            out.append(article + KIND_PHRASE[m.device.kind])
        else:
            before = padded[: m.start].split()
            article = "" if before and before[-1] in ("the", "my", "our") else "the "
            out.append(article + ZONE_WORD)
        cursor = m.end
    out.append(padded[cursor:])
    masked = " ".join("".join(out).split())
    masked = re.sub(r"\b(\w+)(?: \1\b)+", r"\1", masked)  # "printer printer" → "printer"
    words = set(text.split())
    kinds = frozenset(
        DeviceKind(kind) for kind, kind_words in KIND_WORDS.items() if words & set(kind_words)
    )
    devices: dict[str, DeviceEntry] = {}
    zones: dict[str, None] = {}
    for m in mentions:
        if m.device is not None:
            devices.setdefault(m.device.external_id, m.device)
        elif m.zone is not None:
            zones.setdefault(m.zone, None)
    return Slots(masked, tuple(devices.values()), tuple(zones), kinds)


def file_name(clean: str) -> str | None:
    match = _FILE.search(clean)
    return match.group(0) if match else None


_NUMBER = r"(\d{1,4})"
_BRIGHTNESS = (
    re.compile(rf"\b{_NUMBER} percent\b"),
    re.compile(rf"\bbrightness (?:to |at |of )?{_NUMBER}\b"),
    re.compile(rf"\b(?:to|at) {_NUMBER}\b"),
    re.compile(rf"\b{_NUMBER}\b"),
)
_BRIGHTNESS_WORDS = {
    "half": 50, "halfway": 50, "full": 100, "max": 100, "maximum": 100, "minimum": 1,
    "quarter": 25,
}  # fmt: skip
_HEATER = r"(nozzle|hotend|hot end|extruder|bed)"
_HEAT_PATTERNS = (
    # "230 on the nozzle", "245 nozzle"
    re.compile(rf"\b{_NUMBER} (?:degrees )?(?:(?:on|for|at) (?:the |its )?)?{_HEATER}\b"),
    # "nozzle to 210", "bed of the voron 2.4 to 110", "nozzle 220", "nozzle at 170"
    re.compile(
        rf"\b{_HEATER}(?: temp(?:erature)?)?(?: (?:on|of) (?:the )?\S+(?: \S+)?)?"
        rf"(?: (?:to|at|up to|is|of))? {_NUMBER}\b"
    ),
)


def brightness(clean: str) -> int | None:
    for pattern in _BRIGHTNESS:
        match = pattern.search(clean)
        if match:
            return int(match.group(1))
    for word, value in _BRIGHTNESS_WORDS.items():
        if re.search(rf"\b{word}\b", clean):
            return value
    return None


def heat_targets(clean: str) -> dict[str, int]:
    """``{"nozzle": °C, "bed": °C}`` (either or both) from numbers, heater words and
    materials; a lone number is the nozzle's."""
    args: dict[str, int] = {}
    claimed: set[int] = set()
    # In the order they are said: "nozzle 220, bed 55" pairs each heater with the number
    # after it, "245 nozzle 105 bed" with the number before it.
    matches = sorted(
        (m for pattern in _HEAT_PATTERNS for m in pattern.finditer(clean)), key=lambda m: m.start()
    )
    for match in matches:
        groups = match.groups()
        number_first = groups[0].isdigit()
        number, heater = (groups[0], groups[1]) if number_first else (groups[1], groups[0])
        key = "bed" if heater == "bed" else "nozzle"
        number_at = match.start(1 if number_first else 2)
        if key in args or number_at in claimed:
            continue
        args[key] = int(number)
        claimed.add(number_at)
    if not args:
        for material, temps in MATERIALS.items():
            if re.search(rf"\b{material}\b", clean):
                return dict(temps)
        numbers = [int(n) for n in re.findall(r"\b(\d{2,3})\b", clean) if 20 <= int(n) <= 500]
        if len(numbers) == 1:
            args["nozzle"] = numbers[0]
    return args


def arguments(intent: str, clean: str) -> dict[str, Any]:
    if intent == "light_set_brightness":
        value = brightness(clean)
        return {} if value is None else {"brightness": value}
    if intent == "printer_heat":
        return dict(heat_targets(clean))
    if intent == "print_start":
        file = file_name(clean)
        return {} if file is None else {"file": file}
    return {}
