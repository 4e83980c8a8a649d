"""The answer cache for ``ask`` answers from the mcp and frontier tiers.

Keyed on the normalized text plus what the text refers to: the devices it names (or the
conversation's device when it says "it") and whether it is negated, so an answer is never
reused across a negation or for a different device even if the words are otherwise the
same. Device actions are never cached (the service only stores ``ask`` answers). Entries
expire after a TTL; the least recently used entry goes when the cache is full. In-process:
each server process has its own.

An answer that depends on who asks ("my last prints") or on the lab's live state (it names
a device or a zone of the lab) is keyed to the person asking (``CacheKey.asker``, see
``asker_scope``): it is never replayed to anyone else. Answers from the lab's own state
(``conversation.answers``) are never cached at all. A hit is recorded with the tier
``cache``; ``forceTier`` bypasses the cache.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from kittylab.domain.enums import Tier

_FIRST_PERSON = re.compile(r"\b(i|im|ive|id|me|my|mine|myself|we|our|ours|us)\b")


@dataclass(frozen=True)
class CacheKey:
    text: str
    devices: tuple[str, ...]
    negated: bool
    asker: UUID | None = None
    """The person the answer is for; None: an answer anybody may be given."""


def asker_scope(clean: str, devices: tuple[str, ...], zone: str | None, asker: UUID) -> UUID | None:
    """``asker`` when the answer to the normalized text ``clean`` may depend on who asks
    (it speaks in the first person) or on the lab's live state (it names devices or a zone
    of the lab); None when it may be shared."""
    if devices or zone is not None or _FIRST_PERSON.search(clean):
        return asker
    return None


@dataclass(frozen=True)
class CachedAnswer:
    reply: str
    tier: Tier
    cost: Decimal
    stored_at: float


class AnswerCache:
    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self._max = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[CacheKey, CachedAnswer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> CachedAnswer | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() - entry.stored_at > self._ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: CacheKey, reply: str, tier: Tier, cost: Decimal) -> None:
        if self._max <= 0:
            return
        with self._lock:
            self._entries[key] = CachedAnswer(reply, tier, cost, self._clock())
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
