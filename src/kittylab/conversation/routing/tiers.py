"""Which tier should answer a request, before any budget or offline gating.

- Device requests, CAD requests, help and clarifications stay ``local``: only the lab can
  act on the lab, and a cloud model is never asked to choose a device action.
- Questions that need fresh or external data (prices, news, "this week", stock, lead
  times) go to ``mcp``.
- Other questions go to ``frontier`` when the local tier's answer confidence is below the
  threshold, or when the caller forces it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kittylab.conversation.understanding.types import ASK, AskKind, Understanding
from kittylab.domain.enums import Tier


@dataclass(frozen=True)
class TierChoice:
    tier: Tier
    reason: str | None
    """Why the request left the local tier (or why a forced tier was not used)."""


def choose_tier(
    understanding: Understanding,
    *,
    local_threshold: float,
    local_answer_confidence: float,
    forced: Tier | None = None,
) -> TierChoice:
    u = understanding
    if u.intent != ASK or u.problem is not None or u.ask_kind is AskKind.HELP:
        if forced is not None and forced is not Tier.LOCAL:
            return TierChoice(
                Tier.LOCAL, f"forceTier {forced.value} ignored: this request is answered locally"
            )
        return TierChoice(Tier.LOCAL, None)
    if forced is not None:
        return TierChoice(forced, f"forced by the caller ({forced.value})")
    if u.ask_kind is AskKind.FRESH_DATA:
        return TierChoice(Tier.MCP, "needs fresh or external data")
    if local_answer_confidence < local_threshold:
        return TierChoice(
            Tier.FRONTIER,
            f"local answer confidence {local_answer_confidence:.2f} is below the "
            f"threshold {local_threshold:.2f}",
        )
    return TierChoice(Tier.LOCAL, None)
