"""The hash chain of the audit log.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own content in
a canonical JSON form (sorted keys, no whitespace, UTC timestamps with microseconds). Any
edit changes that entry's hash; a deleted or inserted entry breaks the link of the one
after it. The first entry is number 1 and links to ``GENESIS``.

``details`` are stored as PostgreSQL ``jsonb``, which keeps numbers as exact decimals and
hands them back through ``json.loads``: ``1e20`` written as a float comes back as the int
``100000000000000000000``, ``-0.0`` as ``0.0``. ``canonical_details`` maps every value to
the form that survives that round trip unchanged, and both the writer and the verifier
hash that form, so a stored entry always verifies.

What a chain cannot show by itself: entries cut off at the end (the remaining chain is
still consistent), or a chain rewritten from some point on by someone who recomputes every
hash after it. Both are caught by comparing with an *anchor*: an entry's ``seq`` and hash
recorded somewhere the database's owner cannot reach (see ``verify``'s ``anchors``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any
from uuid import UUID

GENESIS = "0" * 64

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True)
class AuditRecord:
    """One entry as stored: ``seq`` is its place in the chain."""

    seq: int
    occurred_at: datetime
    actor_id: UUID | None
    action: str
    subject_type: str | None
    subject_id: str | None
    details: Mapping[str, Any]
    prev_hash: str
    entry_hash: str


def canonical_details(value: Any, path: str = "details") -> JsonValue:
    """``value`` as plain JSON data that comes back from ``jsonb`` exactly as it went in.

    Integral floats become ints (``jsonb`` returns ``1e20`` as an int, ``-0.0`` as ``0``);
    other finite floats stay floats (Python writes the shortest decimal that reads back
    as the same float, and ``jsonb`` keeps that decimal exactly). UUIDs, dates and enums
    become their text; tuples become lists. Raises ``ValueError`` naming the path for what
    ``jsonb`` cannot hold faithfully: NaN, infinities, NUL characters, non-text keys and
    objects of other types."""
    if isinstance(value, Enum):  # before str: a StrEnum is stored as its plain value
        return canonical_details(value.value, path)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path}: text with NUL characters cannot be stored")
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{path}: {value} cannot be stored as JSON")
        if value == value.to_integral_value():
            return int(value)
        return canonical_details(float(value), path)  # a tiny one may round to 0.0
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} cannot be stored as JSON")
        return int(value) if value.is_integer() else value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{path}: a time needs a time zone")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: key {key!r} is not text")
            if "\x00" in key:
                raise ValueError(f"{path}: a key with NUL characters cannot be stored")
            out[key] = canonical_details(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [canonical_details(item, f"{path}.{i}") for i, item in enumerate(value)]
    raise ValueError(f"{path}: a {type(value).__name__} cannot be stored as JSON")


def canonical_content(
    *,
    occurred_at: datetime,
    actor_id: UUID | None,
    action: str,
    subject_type: str | None,
    subject_id: str | None,
    details: Mapping[str, Any],
) -> bytes:
    """The bytes an entry's hash covers (besides the previous hash)."""
    if occurred_at.tzinfo is None:
        # A naive time would be read in the local zone here and in the database's
        # session zone there: the same entry would hash differently.
        raise ValueError("occurred_at needs a time zone")
    content = {
        "at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": str(actor_id) if actor_id is not None else None,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "details": canonical_details(details),
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + content).hexdigest()


def entry_hash(record: AuditRecord, prev_hash: str) -> str:
    return link_hash(
        prev_hash,
        canonical_content(
            occurred_at=record.occurred_at,
            actor_id=record.actor_id,
            action=record.action,
            subject_type=record.subject_type,
            subject_id=record.subject_id,
            details=record.details,
        ),
    )


class BreakKind(StrEnum):
    EDITED = "edited"
    """The entry's content no longer matches its own hash."""
    UNLINKED = "unlinked"
    """The entry's ``prev_hash`` is not the hash of the entry before it."""
    MISSING = "missing"
    """Sequence numbers are missing before this point."""
    ANCHOR = "anchor"
    """An entry recorded elsewhere is gone or has a different hash."""


@dataclass(frozen=True)
class ChainBreak:
    """One problem. For ``MISSING``, ``seq`` is the first missing number."""

    seq: int
    kind: BreakKind
    problem: str

    def __str__(self) -> str:
        if self.kind is BreakKind.MISSING:
            return self.problem
        return f"entry {self.seq}: {self.problem}"


@dataclass(frozen=True)
class ChainReport:
    entries: int
    breaks: tuple[ChainBreak, ...]
    head: str
    """The last entry's stored hash (``GENESIS`` for an empty log). Recorded elsewhere
    with ``head_seq``, it is the anchor that later reveals truncation."""
    head_seq: int = 0

    @property
    def intact(self) -> bool:
        return not self.breaks


def _missing(first: int, last: int) -> ChainBreak:
    if first == last:
        return ChainBreak(first, BreakKind.MISSING, f"entry {first} is missing (deleted)")
    return ChainBreak(first, BreakKind.MISSING, f"entries {first}..{last} are missing (deleted)")


def verify(records: Iterable[AuditRecord], anchors: Mapping[int, str] | None = None) -> ChainReport:
    """Walk the chain in ``seq`` order and report every entry whose content no longer
    matches its hash (edited) or whose link does not match the entry before it (an entry
    before it was deleted, inserted or edited). Sequence gaps are reported too, including
    at the start (the chain begins at 1): a deleted entry leaves one even when someone
    recomputed the hashes after it.

    ``anchors`` maps ``seq`` to the hash recorded for that entry elsewhere (an earlier
    report's head): an anchored entry that is gone reveals truncation, one with another
    hash reveals a rewrite with recomputed hashes."""
    expected_anchors = dict(anchors or {})
    breaks: list[ChainBreak] = []
    expected_prev = GENESIS
    previous_seq = 0
    count = 0
    for record in records:
        count += 1
        if record.seq != previous_seq + 1:
            if record.seq > previous_seq + 1:
                breaks.append(_missing(previous_seq + 1, record.seq - 1))
            else:  # records are read in seq order; this means duplicates or bad input
                breaks.append(
                    ChainBreak(
                        record.seq, BreakKind.UNLINKED, f"is out of order after {previous_seq}"
                    )
                )
        if record.prev_hash != expected_prev:
            breaks.append(
                ChainBreak(
                    record.seq,
                    BreakKind.UNLINKED,
                    "does not link to the entry before it (an entry was deleted, inserted "
                    "or edited)",
                )
            )
        try:
            content_ok = entry_hash(record, record.prev_hash) == record.entry_hash
        except ValueError:  # stored content no writer could have produced
            content_ok = False
        if not content_ok:
            breaks.append(
                ChainBreak(
                    record.seq, BreakKind.EDITED, "its content does not match its hash (edited)"
                )
            )
        anchored = expected_anchors.pop(record.seq, None)
        if anchored is not None and anchored != record.entry_hash:
            breaks.append(
                ChainBreak(
                    record.seq,
                    BreakKind.ANCHOR,
                    f"its hash is not the one recorded for it ({anchored[:12]}…): the log "
                    "was rewritten",
                )
            )
        expected_prev = record.entry_hash
        previous_seq = record.seq
    for seq, anchored in sorted(expected_anchors.items()):
        breaks.append(
            ChainBreak(
                seq,
                BreakKind.ANCHOR,
                f"was recorded with hash {anchored[:12]}… but is not in the log (truncated "
                "or deleted)",
            )
        )
    return ChainReport(count, tuple(breaks), expected_prev, previous_seq)
