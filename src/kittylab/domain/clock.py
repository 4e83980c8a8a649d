"""Time and identifiers, kept pure: callers pass ``now`` in, so rules are testable."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from uuid import UUID


def utcnow() -> datetime:
    return datetime.now(UTC)


_RANDOM_BITS = 74  # rand_a (12) and rand_b (62) together
_uuid7_lock = threading.Lock()
_uuid7_last = (0, 0)  # (milliseconds, the 74-bit counter) of the last id made here


def uuid7() -> UUID:
    """A time-ordered UUID (RFC 9562 version 7). Ordering ids by value orders records by
    creation, which is what cursor pagination and "latest report" queries walk.

    Within one process ids are strictly increasing, even within a millisecond (RFC 9562
    §6.2 method 2: the random bits act as a counter, seeded randomly each millisecond with
    the top bit clear so the counter has room to grow)."""
    global _uuid7_last
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_counter = _uuid7_last
        if ms <= last_ms:
            ms, counter = last_ms, last_counter + 1
            if counter >> _RANDOM_BITS:  # the counter ran out: borrow the next millisecond
                ms, counter = ms + 1, 0
        else:
            counter = int.from_bytes(os.urandom(10), "big") >> (80 - _RANDOM_BITS + 1)
        _uuid7_last = (ms, counter)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (counter >> 62) << 64
    value |= 0b10 << 62
    value |= counter & ((1 << 62) - 1)
    return UUID(int=value)
