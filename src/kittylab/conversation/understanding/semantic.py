"""The semantic stage, between the grammar and the local model: the utterance, with its
device and zone names masked by kind words, is embedded by a small sentence encoder and
compared with exemplars of every intent (``exemplars.py``: the templates and the existing
corpus, never the held-out corpora). Slots are filled the grammar's way (``slots.py``).

Only intents the named device can do compete (every device intent when none is named),
plus ``ask``; a question ("how warm is it…") may only read. Intents whose polarity the
words contradict never compete (``polarity.py``). When the top two are close the stage
asks which was meant instead of guessing: the reading carries a ``problem`` (the question)
and ``clarify`` (the two intents), so it is never acted on.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kittylab.conversation.understanding import polarity, signals, slots
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.exemplars import all_exemplars
from kittylab.conversation.understanding.types import ASK, DEVICE_INTENTS, Stage, Understanding
from kittylab.conversation.understanding.vocabulary import DeviceEntry, LabVocabulary
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import InfrastructureError

READ_ONLY = frozenset({"printer_status", "sensor_read", "camera_snapshot"})
_KIND_PREFIX = {
    "light": DeviceKind.LIGHT,
    "power": DeviceKind.POWER,
    "door": DeviceKind.DOOR,
    "camera": DeviceKind.CAMERA,
    "print": DeviceKind.PRINTER,
    "printer": DeviceKind.PRINTER,
    "sensor": DeviceKind.SENSOR,
}
TOP_K = 3
"""An intent's score: the mean of its best ``TOP_K`` exemplar similarities."""


class EncoderUnavailable(InfrastructureError):
    """The sentence encoder could not load (package missing, file damaged)."""


class SentenceEncoder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""


def semantic_text(
    clean: str, vocabulary: LabVocabulary, corrected: str, corrections: Sequence[tuple[str, str]]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The words the semantic stage reads: the grammar's corrections only where they give a
    device or zone name ("prusha" → "prusa"), typos of cue words set right
    (``polarity.fix_cue_typos``), everything else as said. The grammar's corrector pulls
    any unknown word to its own vocabulary ("paused" → "pause", "release" → "please"),
    which would change what is asked."""
    spoken = [n for d in vocabulary.devices for n in d.names]
    spoken += [n for z in vocabulary.zones for n in z.names]
    names = {word for name in spoken for word in name.split()}
    text = f" {clean} "
    kept = []
    for was, now in corrections:
        if all(word in names for word in now.split()) and f" {was} " in text:
            text = text.replace(f" {was} ", f" {now} ")
            kept.append((was, now))
    return polarity.fix_cue_typos(" ".join(text.split())), tuple(kept)


def kind_of(intent: str) -> DeviceKind | None:
    return _KIND_PREFIX.get(intent.split("_")[0])


@dataclass(frozen=True)
class SemanticSettings:
    threshold: float = 0.55
    """A best score below this is not a reading (the model or a question follows)."""
    margin: float = 0.03
    """Top two closer than this: ask which one was meant."""


class SemanticStage:
    """Embeds its exemplars once (on first use); thread-safe."""

    def __init__(self, encoder: SentenceEncoder, settings: SemanticSettings | None = None) -> None:
        self.encoder = encoder
        self.settings = settings or SemanticSettings()
        self._lock = threading.Lock()
        self._matrix: np.ndarray | None = None
        self._intents: np.ndarray | None = None
        self._rows: dict[str, np.ndarray] = {}

    def _exemplars(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._matrix is None or self._intents is None:
                pairs = all_exemplars()
                self._matrix = self.encoder.encode([text for text, _ in pairs])
                self._intents = np.array([intent for _, intent in pairs])
                self._rows = {i: np.flatnonzero(self._intents == i) for i in set(self._intents)}
            return self._matrix, self._intents

    def warm_up(self) -> None:
        self._exemplars()

    def scores(self, masked: str, candidates: Sequence[str]) -> dict[str, float]:
        matrix, _ = self._exemplars()
        vector = self.encoder.encode([masked])[0]
        sims = matrix @ vector
        out: dict[str, float] = {}
        for intent in candidates:
            rows = self._rows.get(intent)
            if rows is None:
                continue
            mine = np.sort(sims[rows])[::-1][:TOP_K]
            if mine.size:
                out[intent] = float(mine.mean())
        return out

    def read(
        self,
        corrected: str,
        vocabulary: LabVocabulary,
        context: ConversationContext,
        corrections: tuple[tuple[str, str], ...] = (),
    ) -> Understanding | None:
        """A reading, or None when nothing scores above the threshold."""
        found = slots.read_slots(corrected, vocabulary)
        named = found.devices[0] if len(found.devices) == 1 else None
        last = vocabulary.device(context.device) if context.device else None
        cues = polarity.read_polarity(found.masked)
        candidates = self._candidates(named, found, vocabulary, last, corrected, cues)
        scores = self.scores(found.masked, [*candidates, ASK])
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        if not ranked:
            return None
        (top, best), *rest = ranked
        factors = {f"semantic:{k}": round(v, 4) for k, v in ranked[:4]}
        if best < self.settings.threshold:
            return None
        if top == ASK:
            return Understanding(intent=ASK, confidence=round(best, 4), stage=Stage.SEMANTIC,
                                 factors=factors)  # fmt: skip
        runner_up = rest[0] if rest else None
        device, candidates_devices, zone = _device_for(top, named, found, vocabulary, last)
        args = slots.arguments(top, found.masked if top != "print_start" else corrected)
        confidence = round(min(0.95, best), 4)
        problem = None
        clarify: tuple[str, ...] = ()
        if runner_up is not None and best - runner_up[1] < self.settings.margin:
            clarify = (top, runner_up[0])
            problem = clarifying_question(top, runner_up[0], device)
        elif device is None:
            names = ", ".join(d.display_name for d in candidates_devices[:6])
            problem = f"which one do you mean: {names}?" if names else "which device do you mean?"
        return Understanding(
            intent=top,
            confidence=confidence,
            stage=Stage.SEMANTIC,
            factors=factors,
            device=device,
            args=args,
            candidates=tuple(candidates_devices) if device is None else (),
            problem=problem,
            corrections=corrections,
            zone=zone,
            clarify=clarify,
        )

    @staticmethod
    def _candidates(
        named: DeviceEntry | None,
        found: slots.Slots,
        vocabulary: LabVocabulary,
        last: DeviceEntry | None,
        corrected: str,
        cues: polarity.Polarity,
    ) -> list[str]:
        if named is not None:
            pool = set(named.intents)
        elif found.devices:
            pool = {i for d in found.devices for i in d.intents}
        elif found.zones:
            pool = {i for z in found.zones for d in vocabulary.devices_in(z) for i in d.intents}
        elif found.kinds:
            pool = {i for k in found.kinds for d in vocabulary.of_kind(k) for i in d.intents}
        elif last is not None:
            pool = set(last.intents)
        else:
            pool = set(DEVICE_INTENTS)
        if found.kinds and (named is None or named.kind in found.kinds):
            # "the lights in the welding bay": the kind word narrows the zone's devices.
            narrowed = {i for i in pool if kind_of(i) in found.kinds}
            pool = narrowed or pool
        if signals.is_open_question(corrected):
            pool &= READ_ONLY  # a question may read, never act
        return sorted(
            i
            for i in pool
            if i in DEVICE_INTENTS and polarity.allowed(i, cues) and _evidence(i, found, cues)
        )


_READ_WORDS = re.compile(
    r"\b(status|doing|progress|left|done|finished|finish|busy|idle|printing|heating|state|"
    r"how long|eta|temp|temperature|nozzle|bed|hot|warm|cold|humid|humidity|damp|air|fumes|"
    r"dust|reading|readings|read|show|see|look|picture|photo|pic|snapshot|image|camera|cam|"
    r"view|check|up to|going|hows|how is|whats|what is|update|report|sensor|level|levels)\b"
)
_BRIGHTNESS_WORDS = re.compile(r"\b(\d+|half|full|max|maximum|dim|dimmer|brighter|bright|"
                               r"brightness|low|lower|raise)\b")  # fmt: skip


def _evidence(intent: str, found: slots.Slots, cues: polarity.Polarity) -> bool:
    """Whether the words carry what the intent needs to be meant at all: its own polarity
    cue ("off", "unlock", "resume"), a level to dim to, a file to print, a word asking to
    read or look. Without it, a remark naming a device ("the welder was loud today") is no
    request."""
    text = found.masked
    axis_sign = polarity.AXIS_OF.get(intent)
    if intent == "print_start" and slots.file_name(text) is None:
        return False
    if axis_sign is not None:
        axis, sign = axis_sign
        return sign in cues.signs(axis)
    if intent == "light_set_brightness":
        return _BRIGHTNESS_WORDS.search(text) is not None
    return _READ_WORDS.search(text) is not None


def _device_for(
    intent: str,
    named: DeviceEntry | None,
    found: slots.Slots,
    vocabulary: LabVocabulary,
    last: DeviceEntry | None,
) -> tuple[DeviceEntry | None, list[DeviceEntry], str | None]:
    if named is not None:
        return named, [], named.zone
    capable = [d for d in found.devices if intent in d.intents]
    if len(capable) == 1:
        return capable[0], [], capable[0].zone
    if found.zones:
        pool = [d for z in found.zones for d in vocabulary.devices_in(z) if intent in d.intents]
        if len(pool) == 1:
            return pool[0], [], pool[0].zone
        if pool:
            return None, pool, found.zones[0]
    if last is not None and intent in last.intents:
        return last, [], last.zone
    kind = kind_of(intent)
    pool = [d for d in vocabulary.of_kind(kind) if intent in d.intents] if kind else []
    if len(pool) == 1:
        return pool[0], [], pool[0].zone
    return None, pool, None


_SAY = {
    "light_on": "turn {d} on",
    "light_off": "turn {d} off",
    "light_set_brightness": "dim {d}",
    "power_on": "power {d} on",
    "power_off": "power {d} off",
    "door_lock": "lock {d}",
    "door_unlock": "unlock {d}",
    "printer_heat": "heat {d}",
    "printer_cooldown": "cool {d} down",
    "print_start": "start a print on {d}",
    "print_pause": "pause {d}",
    "print_resume": "resume {d}",
    "print_cancel": "cancel the print on {d}",
    "printer_status": "tell you how {d} is doing",
    "camera_snapshot": "take a snapshot with {d}",
    "sensor_read": "read {d}",
    ASK: "just answer a question",
}


def clarifying_question(first: str, second: str, device: DeviceEntry | None) -> str:
    name = f"the {device.display_name}" if device is not None else "it"

    def say(intent: str) -> str:
        return _SAY.get(intent, intent.replace("_", " ")).format(d=name)

    return f"Did you want me to {say(first)}, or to {say(second)}?"
