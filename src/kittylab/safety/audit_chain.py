"""The hash chain of the audit log.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own content in
a canonical JSON form (sorted keys, no whitespace, UTC timestamps with microseconds). Any
edit changes that entry's hash; a deleted or inserted entry breaks the link of the one
after it. The first entry links to ``GENESIS``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

GENESIS = "0" * 64


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


def canonical_content(
    *,
    occurred_at: datetime,
    actor_id: UUID | None,
    action: str,
    subject_type: str | None,
    subject_id: str | None,
    details: Mapping[str, Any],
) -> bytes:
    content = {
        "at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": str(actor_id) if actor_id is not None else None,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "details": details,
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


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    problem: str


@dataclass(frozen=True)
class ChainReport:
    entries: int
    breaks: tuple[ChainBreak, ...]
    head: str

    @property
    def intact(self) -> bool:
        return not self.breaks


def verify(records: Iterable[AuditRecord]) -> ChainReport:
    """Walk the chain in ``seq`` order and report every entry whose content no longer
    matches its hash (edited) or whose link does not match the entry before it (an entry
    before it was deleted, inserted or edited). Sequence gaps are reported too: a deleted
    entry leaves one even when someone recomputed the hashes after it."""
    breaks: list[ChainBreak] = []
    expected_prev = GENESIS
    previous_seq: int | None = None
    count = 0
    for record in records:
        count += 1
        if previous_seq is not None and record.seq != previous_seq + 1:
            breaks.append(
                ChainBreak(
                    record.seq,
                    f"entries {previous_seq + 1}..{record.seq - 1} are missing (deleted)",
                )
            )
        if record.prev_hash != expected_prev:
            breaks.append(
                ChainBreak(
                    record.seq,
                    "does not link to the entry before it (an entry was deleted, inserted "
                    "or edited)",
                )
            )
        if entry_hash(record, record.prev_hash) != record.entry_hash:
            breaks.append(ChainBreak(record.seq, "its content does not match its hash (edited)"))
        expected_prev = record.entry_hash
        previous_seq = record.seq
    return ChainReport(count, tuple(breaks), expected_prev)
