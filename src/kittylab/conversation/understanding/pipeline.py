"""Understanding, stage by stage: the grammar first; then, when the grammar did not match
confidently and the words name a device, zone or kind, the semantic stage (a sentence
encoder against exemplars); the local model only when neither was confident and the text
sounds like a device request; otherwise the text is a question (``ask``), told apart as
help, fresh data or reasoning.

Whatever stage read it, a device reading whose polarity the words contradict ("turn the
heaters off" read as heating) is never acted on: it becomes a clarifying question
(``polarity.py``)."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import replace

from kittylab.conversation.understanding import polarity, signals, slots
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.grammar import READ_ONLY_INTENTS, GrammarStage, _check
from kittylab.conversation.understanding.model import IntentModel, ModelUnavailable
from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.semantic import (
    EncoderUnavailable,
    SemanticStage,
    clarifying_question,
    semantic_text,
)
from kittylab.conversation.understanding.templates import KIND_WORDS
from kittylab.conversation.understanding.types import (
    ASK,
    CAD_GENERATE,
    DEVICE_INTENTS,
    AskKind,
    Stage,
    Understanding,
)
from kittylab.conversation.understanding.vocabulary import LabVocabulary
from kittylab.domain.cad_prompt import UnknownPart, parse_prompt
from kittylab.domain.errors import ValidationFailed

log = logging.getLogger(__name__)

INJECTION_PROBLEM = (
    "I can't set the lab's rules aside. Ask for one thing at a time; anything hazardous "
    "always needs a safety approval."
)


class Understander:
    """Caches one compiled grammar per lab vocabulary; safe to share between threads."""

    def __init__(
        self,
        model: IntentModel | None = None,
        grammar_threshold: float = 0.75,
        semantic: SemanticStage | None = None,
    ) -> None:
        self.model = model
        self.grammar_threshold = grammar_threshold
        self.semantic = semantic
        self._lock = threading.Lock()
        self._grammar: GrammarStage | None = None

    def grammar(self, vocabulary: LabVocabulary) -> GrammarStage:
        with self._lock:
            current = self._grammar
            if current is None or current.vocabulary.fingerprint != vocabulary.fingerprint:
                current = GrammarStage(vocabulary)
                current.parse("turn on the lights")  # compile hassil's lazy parts now
                self._grammar = current
            return current

    def understand(
        self,
        text: str,
        vocabulary: LabVocabulary,
        context: ConversationContext | None = None,
        *,
        use_model: bool = True,
        use_semantic: bool = True,
    ) -> Understanding:
        context = context or ConversationContext()
        reading = self._understand(text, vocabulary, context, use_model, use_semantic)
        return guard_polarity(reading, normalize(text), vocabulary, self.grammar(vocabulary))

    def _understand(
        self,
        text: str,
        vocabulary: LabVocabulary,
        context: ConversationContext,
        use_model: bool,
        use_semantic: bool,
    ) -> Understanding:
        clean = normalize(text)
        if signals.is_injection(clean):
            return Understanding(
                intent=ASK,
                confidence=0.9,
                stage=Stage.FALLBACK,
                factors={"injection": 1.0},
                problem=INJECTION_PROBLEM,
                ask_kind=AskKind.HELP,
            )
        grammar = self.grammar(vocabulary)
        reading = grammar.parse(text, context)
        if reading is not None and reading.confidence >= self.grammar_threshold:
            return reading
        part = part_request(clean)
        if part is not None:
            return part
        if use_semantic and self.semantic is not None:
            semantic = self._semantic_reading(clean, vocabulary, context, grammar)
            if semantic is not None:
                return semantic
        if not self._sounds_like_device_request(clean, vocabulary):
            return _question(clean, reading)
        if use_model and self.model is not None:
            try:
                return self._model_reading(text, clean, vocabulary, context, reading)
            except ModelUnavailable as exc:
                log.warning("local model unavailable: %s", exc)
                fallback = reading or _not_understood(clean)
                return replace(fallback, factors={**fallback.factors, "model_unavailable": 1.0})
        return reading or _not_understood(clean)

    def _semantic_reading(
        self,
        clean: str,
        vocabulary: LabVocabulary,
        context: ConversationContext,
        grammar: GrammarStage,
    ) -> Understanding | None:
        assert self.semantic is not None
        corrected, corrections = semantic_text(clean, vocabulary, *grammar.corrector.correct(clean))
        found = slots.read_slots(corrected, vocabulary)
        if not (found.devices or found.zones or found.kinds):
            return None  # nothing in the lab is named: a question, or the model's turn
        try:
            got = self.semantic.read(corrected, vocabulary, context, corrections)
        except EncoderUnavailable as exc:
            log.warning("semantic stage unavailable: %s", exc)
            return None
        if got is None:
            return None
        if got.intent == ASK:
            return replace(got, ask_kind=_ask_kind(clean))
        cues = polarity.read_polarity(found.masked)
        if cues.prohibited and got.intent not in READ_ONLY_INTENTS and got.problem is None:
            return replace(
                got,
                problem="you asked me not to, so I did nothing",
                factors={**got.factors, "negated": 1.0},
            )
        if got.device is not None and got.problem is None:
            problem = _check(got.device, got.intent, got.args)
            if problem is not None:
                return replace(got, problem=problem)
        return got

    def _model_reading(
        self,
        text: str,
        clean: str,
        vocabulary: LabVocabulary,
        context: ConversationContext,
        grammar_reading: Understanding | None,
    ) -> Understanding:
        assert self.model is not None
        got = self.model.read(text, vocabulary, context)
        factors = {f"model:{k}": round(v, 4) for k, v in got.scores.items()}
        factors["model"] = round(got.confidence, 4)
        if got.intent == ASK:
            return Understanding(
                intent=ASK,
                confidence=got.confidence,
                stage=Stage.MODEL,
                factors=factors,
                ask_kind=_ask_kind(clean),
            )
        device = vocabulary.device(got.device) if got.device else None
        # The model may only pick a device the words name (or the context holds): a
        # guessed device is never acted on.
        named = device is not None and (
            any(name in clean for name in device.names) or device.external_id == context.device
        )
        problem = None
        if got.intent not in DEVICE_INTENTS:
            problem = None
        elif device is None or not named:
            problem = "which device do you mean?"
            device = None
        else:
            problem = _check(device, got.intent, got.args)
        if signals.is_negated(clean) and got.intent in DEVICE_INTENTS:
            problem = "you asked me not to, so I did nothing"
        return Understanding(
            intent=got.intent,
            confidence=got.confidence,
            stage=Stage.MODEL,
            factors=factors,
            device=device,
            args=dict(got.args),
            problem=problem,
            zone=device.zone if device else None,
            corrections=grammar_reading.corrections if grammar_reading else (),
        )

    @staticmethod
    def _sounds_like_device_request(clean: str, vocabulary: LabVocabulary) -> bool:
        words = set(clean.split())
        padded = f" {clean} "
        names_device = any(
            f" {name} " in padded for device in vocabulary.devices for name in device.names
        ) or any(word in words for kind in KIND_WORDS.values() for word in kind)
        if not names_device or signals.is_open_question(clean):
            return False
        acts = bool(words & signals.ACTION_WORDS)
        question = signals.is_question(clean)
        fresh = signals.wants_fresh_data(clean)
        if acts:
            return not (question and fresh)
        return not (question or fresh)


def guard_polarity(
    u: Understanding, clean: str, vocabulary: LabVocabulary, grammar: GrammarStage
) -> Understanding:
    """A device reading whose polarity its words contradict becomes a clarifying question
    between it and its opposite: never acted on, never reported as the other."""
    if not u.is_device_intent or u.clarify:
        return u
    corrected, _ = semantic_text(clean, vocabulary, *grammar.corrector.correct(clean))
    cues = polarity.read_polarity(slots.read_slots(corrected, vocabulary).masked)
    if not polarity.contradicts(u.intent, cues):
        return u
    opposite = polarity.OPPOSITE[u.intent]
    return replace(
        u,
        problem=clarifying_question(u.intent, opposite, u.device),
        clarify=(u.intent, opposite),
        factors={**u.factors, "polarity_veto": 1.0},
    )


def _ask_kind(clean: str) -> AskKind:
    return AskKind.FRESH_DATA if signals.wants_fresh_data(clean) else AskKind.REASONING


_MAKE = re.compile(
    r"^(?:please )?(?:(?:can|could|would) you )?(?:make|create|build|generate|design|model)"
    r"(?: me| us)? (?P<what>.+?)(?: please)?$"
)
PART_CONFIDENCE = 0.85


def part_request(clean: str) -> Understanding | None:
    """ "Make a 30 mm washer with an M5 hole": a request to make something the CAD part
    grammar recognizes is a ``cad_generate`` request, even in words the templates do not
    list. A part with impossible dimensions still counts (the CAD service answers with
    the reason); words naming no part family do not."""
    match = _MAKE.match(clean)
    if match is None:
        return None
    what = match.group("what")
    try:
        parse_prompt(what)
    except UnknownPart:
        return None
    except ValidationFailed:
        pass
    return Understanding(
        intent=CAD_GENERATE,
        confidence=PART_CONFIDENCE,
        stage=Stage.GRAMMAR,
        factors={"part_grammar": PART_CONFIDENCE},
        args={"prompt": what},
    )


def _question(clean: str, grammar_reading: Understanding | None) -> Understanding:
    factors = {"no_device_request": 0.9}
    if grammar_reading is not None:
        factors["weak_grammar_match"] = grammar_reading.confidence
    kind = _ask_kind(clean)
    if kind is AskKind.FRESH_DATA:
        factors["fresh_data"] = 1.0
    return Understanding(intent=ASK, confidence=0.9, stage=Stage.FALLBACK, factors=factors,
                         ask_kind=kind)  # fmt: skip


def _not_understood(clean: str) -> Understanding:
    return Understanding(
        intent=ASK,
        confidence=0.3,
        stage=Stage.FALLBACK,
        factors={"unparsed_device_request": 0.3},
        problem='I didn\'t understand that as a device request; try e.g. "pause the Prusa"',
        ask_kind=_ask_kind(clean),
    )
