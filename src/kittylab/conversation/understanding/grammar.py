"""The grammar stage: hassil templates compiled with the lab's device and zone names,
behind a fuzzy corrector, resolving "it" and "there" from the conversation context.

``GrammarStage.parse`` returns an ``Understanding`` when a template matched, or ``None``
when none did (the caller then asks the local model, or treats the text as a question).
Confidence is 0.97 for a clean match and drops for every typo corrected, for a device
taken from context and for readings that compete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hassil import Intents, RecognizeResult, recognize_all
from hassil.models import MatchEntity

from kittylab.conversation.understanding import signals
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.fuzzy import Corrector
from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.templates import (
    EXPANSION_RULES,
    INTENT_SENTENCES,
    KIND_WORDS,
    MATERIALS,
    SKIP_WORDS,
    STOP_RULES,
    fixed_lists,
)
from kittylab.conversation.understanding.types import (
    ASK,
    CAD_GENERATE,
    STOP,
    AskKind,
    Stage,
    Understanding,
)
from kittylab.conversation.understanding.vocabulary import DeviceEntry, LabVocabulary
from kittylab.domain.devices import INTENT_CATALOGUE, validate_command
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import ValidationFailed

CLEAN_MATCH = 0.97
PER_CORRECTION = 0.06
FROM_CONTEXT = 0.95
COMPETING = 0.8

CONTEXT_ZONE = "@context"
READ_ONLY_INTENTS = frozenset({"printer_status", "sensor_read", "camera_snapshot"})
_KIND_OF_SLOT = {kind.value: kind for kind in DeviceKind}
_WORD = re.compile(r"[a-z0-9][a-z0-9.]*")
_SLOT_OR_RULE = re.compile(r"\{[^}]*\}|<[^>]*>")


@dataclass(frozen=True)
class _Reading:
    result: RecognizeResult
    score: tuple[int, int, int]


class GrammarStage:
    """Compiled once per lab vocabulary (``LabVocabulary.fingerprint``); thread-safe to
    share, since parsing keeps no state."""

    def __init__(self, vocabulary: LabVocabulary) -> None:
        self.vocabulary = vocabulary
        self._intents = Intents.from_dict(_intents_dict(vocabulary))
        self._corrector = Corrector(
            _known_words(vocabulary), _device_names(vocabulary), _stop_words()
        )

    def parse(self, text: str, context: ConversationContext | None = None) -> Understanding | None:
        context = context or ConversationContext()
        clean = normalize(text)
        if not clean:
            return None
        corrected, corrections = self._corrector.correct(clean)
        negated = signals.is_negated(corrected)
        candidate = signals.strip_negation(corrected) if negated else corrected
        reading = self._best(candidate, context)
        if reading is None:
            return None
        understanding = self._resolve(reading, context, corrections)
        if understanding is None:
            return None
        if (
            negated
            and (understanding.is_device_intent or understanding.intent == STOP)
            and understanding.intent not in READ_ONLY_INTENTS
        ):
            return _with(
                understanding,
                problem="you asked me not to, so I did nothing",
                factors={**understanding.factors, "negated": 1.0},
            )
        return understanding

    def _best(self, text: str, context: ConversationContext) -> _Reading | None:
        readings = [
            _Reading(r, _score(r))
            for r in recognize_all(text, self._intents, language="en")
            if all(not e.is_wildcard or e.text.strip() for e in r.entities_list)
        ]
        if not readings:
            return None
        readings.sort(key=lambda r: r.score, reverse=True)
        best = readings[0]
        # "turn it off" reads as light_off and power_off alike; the device in context
        # decides which.
        last = self.vocabulary.device(context.device) if context.device else None
        if last is not None:
            tied = [r for r in readings if r.score == best.score]
            fitting = [r for r in tied if r.result.intent.name in last.intents]
            if fitting and len({r.result.intent.name for r in fitting}) == 1:
                best = fitting[0]
                readings = [
                    best,
                    *(r for r in tied if r.result.intent.name == best.result.intent.name),
                ]
        rivals = {
            r.result.intent.name
            for r in readings[1:]
            if r.score == best.score and r.result.intent.name != best.result.intent.name
        }
        if rivals:
            best.result.context["_rivals"] = sorted(rivals)
        return best

    def _resolve(
        self,
        reading: _Reading,
        context: ConversationContext,
        corrections: tuple[tuple[str, str], ...],
    ) -> Understanding | None:
        result = reading.result
        intent = result.intent.name
        factors: dict[str, float] = {"grammar": CLEAN_MATCH}
        confidence = CLEAN_MATCH
        if corrections:
            penalty = PER_CORRECTION * len(corrections)
            factors["typo_corrections"] = -penalty
            confidence -= penalty
        if result.context.get("_rivals"):
            factors["competing_readings"] = COMPETING
            confidence *= COMPETING
        if intent == "_help":
            return Understanding(
                intent=ASK,
                confidence=round(confidence, 4),
                stage=Stage.GRAMMAR,
                factors=factors,
                ask_kind=AskKind.HELP,
                corrections=corrections,
            )
        if intent == CAD_GENERATE:
            prompt = _entity_text(result.entities.get("prompt"))
            return Understanding(
                intent=CAD_GENERATE,
                confidence=round(confidence, 4),
                stage=Stage.GRAMMAR,
                factors=factors,
                args={"prompt": prompt} if prompt else {},
                problem=None if prompt else "what should I design?",
                corrections=corrections,
            )
        if intent == STOP:
            return _stop(result, context, factors, confidence, corrections)
        if intent == "_repeat":
            if context.intent is None:
                return None
            intent = context.intent
            factors["repeat_from_context"] = FROM_CONTEXT
            confidence *= FROM_CONTEXT
        kind_slot = next(
            (
                name
                for name in result.entities
                if name in _KIND_OF_SLOT or name.removesuffix("_kind") in _KIND_OF_SLOT
            ),
            None,
        )
        expected_kind = _KIND_OF_SLOT.get(kind_slot.removesuffix("_kind")) if kind_slot else None
        device, candidates, zone, how = self._target(result, intent, expected_kind, context)
        if how == "context":
            factors["device_from_context"] = FROM_CONTEXT
            confidence *= FROM_CONTEXT
        args = _args(result) if result.intent.name != "_repeat" else dict(context.args)
        problem = None
        if device is None:
            problem = _which(intent, candidates, zone)
        else:
            problem = _check(device, intent, args)
        return Understanding(
            intent=intent,
            confidence=round(max(0.0, min(1.0, confidence)), 4),
            stage=Stage.GRAMMAR,
            factors=factors,
            device=device,
            args=args,
            candidates=tuple(candidates) if device is None else (),
            problem=problem,
            corrections=corrections,
            zone=zone or (device.zone if device else None),
        )

    def _target(
        self,
        result: RecognizeResult,
        intent: str,
        kind: DeviceKind | None,
        context: ConversationContext,
    ) -> tuple[DeviceEntry | None, list[DeviceEntry], str | None, str]:
        """The device a reading names: (device, candidates when ambiguous, zone, how)."""
        vocab = self.vocabulary
        zone_entity = result.entities.get("zone")
        zone = None if zone_entity is None else str(zone_entity.value)
        if zone == CONTEXT_ZONE:
            zone = context.zone
        for name, entity in result.entities.items():
            if name in _KIND_OF_SLOT:
                device = vocab.device(str(entity.value))
                if device is not None:
                    return device, [], device.zone, "name"
        wanted_kind = kind or _kind_for_intent(intent)
        if kind is not None and any(n.endswith("_kind") for n in result.entities):
            pool = vocab.of_kind(kind)
        elif zone is not None and wanted_kind is not None:
            pool = vocab.of_kind(wanted_kind)
        else:
            # A pronoun: the device last mentioned, if it can do this.
            last = vocab.device(context.device) if context.device else None
            if last is not None and intent in last.intents:
                return last, [], last.zone, "context"
            recent = [
                d
                for d in (vocab.device(r) for r in context.recent_devices)
                if d is not None and intent in d.intents
            ]
            if recent:
                return recent[0], [], recent[0].zone, "context"
            pool = vocab.of_kind(wanted_kind) if wanted_kind else []
        if zone is not None:
            pool = [d for d in pool if d.zone == zone]
        if intent == "sensor_read" and "measure" in result.entities:
            measure = str(result.entities["measure"].value)
            pool = [d for d in pool if measure in d.measures] or pool
        capable = [d for d in pool if intent in d.intents] or pool
        if len(capable) == 1:
            return capable[0], [], capable[0].zone, "kind"
        last = vocab.device(context.device) if context.device else None
        if last is not None and last in capable:
            return last, [], last.zone, "context"
        return None, capable, zone, "ambiguous"


def _stop(
    result: RecognizeResult,
    context: ConversationContext,
    factors: dict[str, float],
    confidence: float,
    corrections: tuple[tuple[str, str], ...],
) -> Understanding:
    """A zone's stop (the zone named, or "there": the conversation's), or the lab's."""
    entity = result.entities.get("zone")
    zone = None if entity is None else str(entity.value)
    problem = None
    if zone == CONTEXT_ZONE:
        zone = context.zone
        if zone is None:
            problem = 'which zone should I stop? Name it, or say "stop the whole lab"'
    return Understanding(
        intent=STOP,
        confidence=round(max(0.0, min(1.0, confidence)), 4),
        stage=Stage.GRAMMAR,
        factors=factors,
        args={"scope": "zone" if entity is not None else "lab"},
        problem=problem,
        corrections=corrections,
        zone=zone,
    )


def _with(u: Understanding, **changes: Any) -> Understanding:
    from dataclasses import replace

    return replace(u, **changes)


def _score(result: RecognizeResult) -> tuple[int, int, int]:
    wildcards = sum(1 for e in result.entities_list if e.is_wildcard)
    named = sum(1 for name in result.entities if name in _KIND_OF_SLOT)
    return (-wildcards, named, result.text_chunks_matched)


def _entity_text(entity: MatchEntity | None) -> str:
    return "" if entity is None else " ".join(str(entity.value).split())


def _args(result: RecognizeResult) -> dict[str, Any]:
    args: dict[str, Any] = {}
    entities = result.entities
    if "brightness" in entities:
        args["brightness"] = int(entities["brightness"].value)
    if "nozzle" in entities:
        args["nozzle"] = int(entities["nozzle"].value)
    if "bed" in entities:
        args["bed"] = int(entities["bed"].value)
    if "material" in entities:
        args.update(MATERIALS[str(entities["material"].value)])
    if "file" in entities:
        file = _entity_text(entities["file"])
        if file:
            args["file"] = file
    return args


def _kind_for_intent(intent: str) -> DeviceKind | None:
    prefix = intent.split("_")[0]
    return {
        "light": DeviceKind.LIGHT,
        "power": DeviceKind.POWER,
        "door": DeviceKind.DOOR,
        "camera": DeviceKind.CAMERA,
        "print": DeviceKind.PRINTER,
        "printer": DeviceKind.PRINTER,
        "sensor": DeviceKind.SENSOR,
    }.get(prefix)


def _which(intent: str, candidates: list[DeviceEntry], zone: str | None) -> str:
    if not candidates:
        where = f" in {zone.replace('-', ' ')}" if zone else ""
        return f"I found no device{where} that can do {intent.replace('_', ' ')}"
    names = ", ".join(d.display_name for d in candidates[:6])
    return f"which one do you mean: {names}?"


def _check(device: DeviceEntry, intent: str, args: dict[str, Any]) -> str | None:
    if intent not in device.intents:
        return f"{device.display_name} cannot do {intent.replace('_', ' ')}"
    schema = INTENT_CATALOGUE.get(intent)
    if schema is None:
        return None
    try:
        validate_command({intent: dict(schema)}, intent, args)
    except ValidationFailed as exc:
        return f"{exc.field.removeprefix('payload.')} {exc.message}"
    return None


def _intents_dict(vocab: LabVocabulary) -> dict[str, Any]:
    lists: dict[str, Any] = fixed_lists()
    for kind in DeviceKind:
        values = [
            {"in": name, "out": device.external_id}
            for device in vocab.of_kind(kind)
            for name in _spoken_variants(device)
        ]
        # An empty list would make the templates unmatchable; a value nobody says keeps
        # the structure valid.
        lists[kind.value] = {"values": values or [{"in": "zzz no device", "out": ""}]}
        lists[f"{kind.value}_kind"] = {
            "values": [{"in": word, "out": kind.value} for word in KIND_WORDS[kind.value]]
        }
    lists["zone"] = {
        "values": [{"in": name, "out": zone.name} for zone in vocab.zones for name in zone.names]
        + [{"in": word, "out": CONTEXT_ZONE} for word in ("there", "here", "in there")]
    }
    return {
        "language": "en",
        "intents": {
            name: {"data": [{"sentences": sentences}]}
            for name, sentences in INTENT_SENTENCES.items()
        },
        "lists": lists,
        "expansion_rules": dict(EXPANSION_RULES),
        "skip_words": list(SKIP_WORDS),
    }


def _spoken_variants(device: DeviceEntry) -> list[str]:
    out: dict[str, None] = {}
    for name in device.names:
        out.setdefault(name, None)
        # "mk4" is also heard as "mk 4"; "2.4" as "2 4".
        split = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", name).replace(".", " ")
        out.setdefault(" ".join(split.split()), None)
        if name.endswith(" lights"):
            out.setdefault(name.removesuffix("s"), None)  # "the bench light"
    return list(out)


def _words(texts: list[str]) -> set[str]:
    words: set[str] = set()
    for text in texts:
        words.update(_WORD.findall(_SLOT_OR_RULE.sub(" ", text.casefold())))
    return words


def _stop_words() -> set[str]:
    """The words of the stop sentences: known, but matched exactly. A stop is not read
    into a typo, and its ordinary words ("whole", "place") do not attract corrections of
    other requests ("holes" in a CAD prompt)."""
    return _words([*INTENT_SENTENCES[STOP], *(EXPANSION_RULES[r] for r in STOP_RULES)])


def _known_words(vocab: LabVocabulary) -> set[str]:
    texts = [s for name, sentences in INTENT_SENTENCES.items() if name != STOP for s in sentences]
    texts += [v for k, v in EXPANSION_RULES.items() if k not in STOP_RULES] + SKIP_WORDS
    for values in KIND_WORDS.values():
        texts += list(values)
    texts += [*MATERIALS, "temperature", "humidity", "air", "quality", "fumes", "dust"]
    for device in vocab.devices:
        texts += list(device.names)
    for zone in vocab.zones:
        texts += list(zone.names)
    return _words(texts)


def _device_names(vocab: LabVocabulary) -> list[str]:
    return [name for device in vocab.devices for name in device.names]
