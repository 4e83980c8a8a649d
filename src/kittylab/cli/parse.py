"""``kittylab parse`` and ``kittylab evaluate``: understanding and routing without a server.

``parse`` reads one utterance per line and writes one JSON object per line; nothing is
executed and nothing is recorded. The tier is the one the router selects before budget
and offline gating (the full query path applies those). ``evaluate`` runs a labelled
corpus through the same path and reports accuracy per intent, a confusion matrix and the
share served locally.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kittylab.config import QuerySettings
from kittylab.conversation.routing.tiers import choose_tier
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.conversation.understanding.polarity import OPPOSITE
from kittylab.conversation.understanding.types import Understanding
from kittylab.conversation.understanding.vocabulary import ALWAYS_HAZARDOUS, LabVocabulary
from kittylab.domain.enums import Tier


def parse_one(
    understander: Understander,
    vocabulary: LabVocabulary,
    settings: QuerySettings,
    text: str,
    context: ConversationContext | None = None,
    *,
    use_model: bool = True,
    use_semantic: bool = True,
) -> tuple[dict[str, Any], Understanding]:
    u = understander.understand(
        text, vocabulary, context, use_model=use_model, use_semantic=use_semantic
    )
    choice = choose_tier(
        u,
        local_threshold=settings.local_threshold,
        local_answer_confidence=settings.local_answer_confidence,
    )
    if u.device is not None:
        hazardous = vocabulary.is_hazardous(u.device, u.intent)
    else:
        hazardous = u.intent in ALWAYS_HAZARDOUS
    row = {
        "text": text,
        "intent": u.intent,
        "device": u.device.external_id if u.device else None,
        "args": u.args,
        "tier": choice.tier.value,
        "confidence": round(u.confidence, 4),
        "hazardous": hazardous,
    }
    return row, u


def parse_lines(
    understander: Understander,
    vocabulary: LabVocabulary,
    settings: QuerySettings,
    lines: Iterable[str],
) -> Iterator[str]:
    """One JSON line per input line. Context carries over between lines, as in one
    conversation, so "pause it" after "status of the voron" resolves."""
    context = ConversationContext()
    for line in lines:
        text = line.rstrip("\n")
        row, u = parse_one(understander, vocabulary, settings, text, context)
        if u.device is not None:
            context = context.after(
                device=u.device.external_id,
                zone=u.device.zone,
                intent=u.intent if u.is_device_intent else None,
                args=u.args,
            )
        yield json.dumps(row, ensure_ascii=False)


@dataclass
class Evaluation:
    total: int = 0
    intent_correct: int = 0
    device_correct: int = 0
    both_correct: int = 0
    device_requests: int = 0
    device_requests_local: int = 0
    local: int = 0
    asks_acted_on: int = 0
    exact: int = 0
    """Intent, device and every labelled argument right, and no question asked back. An
    ``ask`` label is met by any reading that is not a device action (a CAD request
    labelled ``ask`` in a corpus that knows only device intents and ``ask``)."""
    clarified: int = 0
    """Answered with a clarifying question: never acted on, never counted exact."""
    inversions: list[str] = field(default_factory=list)
    """The opposite intent of the label (``polarity.OPPOSITE``) came out."""
    hazardous_reported_safe: list[str] = field(default_factory=list)
    """A hazardous request read as something that would be acted on without approval."""
    per_intent: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    misses: list[dict[str, Any]] = field(default_factory=list)

    def render(self) -> str:
        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:.1f}%" if b else "n/a"

        lines = [
            f"utterances: {self.total}",
            f"exact (intent, device, arguments): {pct(self.exact, self.total)}"
            f" ({self.exact}/{self.total})",
            f"clarifying questions: {self.clarified}",
            f"inversions: {len(self.inversions)}",
            f"hazardous reported safe: {len(self.hazardous_reported_safe)}",
            f"intent accuracy: {pct(self.intent_correct, self.total)}",
            f"device accuracy: {pct(self.device_correct, self.total)}",
            f"intent and device: {pct(self.both_correct, self.total)}",
            f"served locally: {pct(self.local, self.total)}",
            f"device requests answered locally: "
            f"{pct(self.device_requests_local, self.device_requests)}",
            f"device actions taken for ask utterances: {self.asks_acted_on}",
            "stages: " + ", ".join(f"{k} {v}" for k, v in sorted(self.stages.items())),
            "",
            "accuracy per intent:",
        ]
        for intent, (ok, n) in sorted(self.per_intent.items()):
            lines.append(f"  {intent:<22} {ok:>4}/{n:<4} {pct(ok, n)}")
        labels = sorted({e for e, _ in self.confusion} | {g for _, g in self.confusion})
        short = {label: label[:6] for label in labels}
        lines += ["", "confusion matrix (rows: expected, columns: got):"]
        lines.append(" " * 22 + " ".join(f"{short[g]:>6}" for g in labels))
        for expected in labels:
            counts = " ".join(f"{self.confusion[(expected, g)] or '.':>6}" for g in labels)
            lines.append(f"  {expected:<20}{counts}")
        for title, texts in (
            ("inverted:", self.inversions),
            ("hazardous reported safe:", self.hazardous_reported_safe),
        ):
            if texts:
                lines += ["", title, *(f"  {t}" for t in texts)]
        if self.misses:
            lines += ["", "misses:"]
            lines += [f"  {json.dumps(m, ensure_ascii=False)}" for m in self.misses]
        return "\n".join(lines)


def evaluate(
    understander: Understander,
    vocabulary: LabVocabulary,
    settings: QuerySettings,
    corpus: Iterable[dict[str, Any]],
    *,
    use_model: bool = True,
    use_semantic: bool = True,
) -> Evaluation:
    """Each corpus entry: ``text``, ``intent``, ``device`` (or null), optional ``context``
    (the device last mentioned) and ``negated`` (understood, but must not be acted on)."""
    result = Evaluation()
    for entry in corpus:
        context = ConversationContext(device=entry.get("context"))
        if entry.get("context"):
            device = vocabulary.device(entry["context"])
            context = ConversationContext(
                device=entry["context"], zone=device.zone if device else None,
                intent=entry.get("context_intent"),
            )  # fmt: skip
        row, u = parse_one(
            understander, vocabulary, settings, entry["text"], context,
            use_model=use_model, use_semantic=use_semantic,
        )  # fmt: skip
        expected_intent = entry["intent"]
        result.total += 1
        result.stages[u.stage.value] += 1
        intent_ok = row["intent"] == expected_intent
        device_ok = row["device"] == entry.get("device")
        result.intent_correct += intent_ok
        result.device_correct += device_ok
        result.both_correct += intent_ok and device_ok
        result.per_intent[expected_intent][0] += intent_ok and device_ok
        result.per_intent[expected_intent][1] += 1
        result.confusion[(expected_intent, row["intent"])] += 1
        local = row["tier"] == Tier.LOCAL.value
        result.local += local
        if expected_intent not in ("ask", "cad_generate"):
            result.device_requests += 1
            result.device_requests_local += local
        if expected_intent == "ask" and u.actionable:
            result.asks_acted_on += 1
        exact = _exact(entry, row, u)
        result.exact += exact
        result.clarified += bool(u.clarify)
        if OPPOSITE.get(expected_intent) == row["intent"] and not u.clarify:
            result.inversions.append(entry["text"])
        if _hazardous_reported_safe(entry, vocabulary, u):
            result.hazardous_reported_safe.append(entry["text"])
        if not exact:
            result.misses.append(
                {"text": entry["text"], "expected": [expected_intent, entry.get("device"),
                 entry.get("args")], "got": [row["intent"], row["device"], row["args"]],
                 "stage": u.stage.value, "clarify": list(u.clarify)}
            )  # fmt: skip
    return result


def _exact(entry: dict[str, Any], row: dict[str, Any], u: Understanding) -> bool:
    if u.clarify:
        return False
    if entry["intent"] == "ask":
        return not u.is_device_intent and u.intent != "stop"
    if row["intent"] != entry["intent"] or row["device"] != entry.get("device"):
        return False
    return "args" not in entry or row["args"] == entry["args"]


def _hazardous_reported_safe(
    entry: dict[str, Any], vocabulary: LabVocabulary, u: Understanding
) -> bool:
    device = vocabulary.device(entry.get("device") or "")
    if device is None or not vocabulary.is_hazardous(device, entry["intent"]):
        return False
    if not u.actionable:
        return False
    return not vocabulary.is_hazardous(u.device, u.intent) if u.device else False
