"""What understanding produces, whichever stage produced it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kittylab.conversation.understanding.vocabulary import DeviceEntry
from kittylab.domain.devices import INTENT_CATALOGUE

ASK = "ask"
CAD_GENERATE = "cad_generate"
STOP = "stop"
"""Stop a zone (``Understanding.zone``) or, with no zone, the whole lab: every device in
its safe state (``safety.stop``). Understood by the grammar only, never guessed by a
model; ``args`` is ``{"scope": "zone" | "lab"}``."""

# The intent vocabulary, in the exact names: the device intents of the catalogue,
# CAD generation and ``ask`` for everything that is not about equipment.
DEVICE_INTENTS: tuple[str, ...] = tuple(INTENT_CATALOGUE)
INTENTS: tuple[str, ...] = (*DEVICE_INTENTS, CAD_GENERATE, ASK)


class Stage(StrEnum):
    GRAMMAR = "grammar"
    MODEL = "model"
    FALLBACK = "fallback"
    """Neither stage understood the text well enough; ``ask`` by default."""


class AskKind(StrEnum):
    HELP = "help"
    """Greetings and questions about KittyLab itself, answered locally."""
    FRESH_DATA = "fresh_data"
    """Needs fresh or external data: prices, news, stock, lead times."""
    REASONING = "reasoning"
    """Anything else: explanation, advice, planning."""


@dataclass(frozen=True)
class Understanding:
    """One reading of an utterance.

    ``device`` is None when the request names no device, or names several and the reading
    could not choose (``candidates`` then lists them). ``problem`` explains, for the reply,
    why a device request cannot be carried out as understood (ambiguous, unsupported,
    negated, out-of-range argument).
    """

    intent: str
    confidence: float
    stage: Stage
    factors: dict[str, float] = field(default_factory=dict)
    device: DeviceEntry | None = None
    args: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[DeviceEntry, ...] = ()
    problem: str | None = None
    ask_kind: AskKind | None = None
    corrections: tuple[tuple[str, str], ...] = ()
    zone: str | None = None

    @property
    def is_device_intent(self) -> bool:
        return self.intent in DEVICE_INTENTS

    @property
    def actionable(self) -> bool:
        """A device request with one device and nothing in the way."""
        return self.is_device_intent and self.device is not None and self.problem is None
