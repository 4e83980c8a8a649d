"""Time and identifiers, kept pure: callers pass ``now`` in, so rules are testable."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from uuid import UUID


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid7() -> UUID:
    """A time-ordered UUID (RFC 9562 version 7). Ordering ids by value orders records by
    creation, which is what cursor pagination walks."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return UUID(int=value)
