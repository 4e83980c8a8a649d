"""The local-model stage's port: a small language model that fills the same schema as the
grammar when the grammar is not confident. Adapters: embedded llama.cpp and any
OpenAI-compatible local server (``adapters/llm``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.vocabulary import LabVocabulary
from kittylab.domain.errors import InfrastructureError


class ModelUnavailable(InfrastructureError):
    """A model tier could not answer: not installed, unreachable, timed out, or answered
    with something unusable. ``str(exc)`` is safe to record."""


@dataclass(frozen=True)
class ModelReading:
    intent: str
    device: str | None
    """external_id, or None."""
    args: dict[str, Any]
    confidence: float
    """Probability of ``intent`` among the allowed intents (0..1)."""
    scores: dict[str, float] = field(default_factory=dict)
    """Probability of each allowed intent, for the decision's factor breakdown."""
    model: str = ""


class IntentModel(Protocol):
    name: str

    def read(
        self, text: str, vocabulary: LabVocabulary, context: ConversationContext
    ) -> ModelReading:
        """Classify ``text`` into the intent vocabulary and fill device and arguments.
        Raises ``ModelUnavailable``; must honour its own timeout."""
