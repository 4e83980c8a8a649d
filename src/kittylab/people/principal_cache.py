"""Bearer token → principal, remembered for a few seconds (issue 14).

Every API request authenticates; looking the token up is a transaction of its own (a
connection, a query, a commit), as much work as a light command's own checks. A server
remembers what a token resolved to for ``TTL_SECONDS``, and forgets it at once when the
people change — a token revoked or issued, a user deactivated or given other roles,
whichever process did it (``adapters.db.change_signal``: the ``kittylab_people``
generation). A token's own expiry is checked on every request, cached or not.

Only while the server hears other processes' changes (``change_signal.listening()``) is
anything remembered: without the listener a revocation by the CLI could go unheard, so
every request reads the database. The TTL bounds what a lost notification could cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from kittylab.adapters.db import change_signal
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import ApiToken
from kittylab.domain.principal import Principal
from kittylab.people.identity import authenticate, hash_token

TTL_SECONDS = 5.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires_at: datetime | None
    fetched: float
    generation: int


class PrincipalCache:
    def __init__(
        self,
        *,
        ttl_seconds: float = TTL_SECONDS,
        max_entries: int = MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._monotonic = monotonic
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def remembered(self, token: str, now: datetime) -> Principal | None:
        """What ``token`` resolved to a moment ago, if that still holds; no I/O."""
        if not change_signal.listening():
            return None
        key = hash_token(token)
        with self._lock:
            entry = self._entries.get(key)
        if (
            entry is not None
            and entry.generation == change_signal.generation(change_signal.PEOPLE)
            and self._monotonic() - entry.fetched < self._ttl
            and (entry.expires_at is None or now < entry.expires_at)
        ):
            return entry.principal
        return None

    def authenticate(
        self, database: Database, token: str, now: datetime, touch_after: timedelta
    ) -> Principal:
        """``identity.authenticate`` in a short transaction of its own, or what it said
        about ``token`` a moment ago (see the module doc). Raises what it raises."""
        key = hash_token(token)
        generation = change_signal.generation(change_signal.PEOPLE)
        remembered = self.remembered(token, now)
        if remembered is not None:
            return remembered
        with database.unit_of_work() as session:
            principal = authenticate(session, token, now, touch_after)
            expires_at = session.scalar(
                select(ApiToken.expires_at).where(ApiToken.token_hash == key)
            )
        if change_signal.listening():
            with self._lock:
                if len(self._entries) >= self._max:
                    self._entries.clear()  # bounded memory; the next requests fill it again
                self._entries[key] = _Entry(principal, expires_at, self._monotonic(), generation)
        return principal
