"""Appending to, reading and verifying the hash-chained audit log
(``kittylab.safety.audit_chain``).

``append`` takes a transaction-scoped advisory lock, so concurrent appends form one chain;
the lock is held until the caller's transaction ends. Append last in a transaction, after
any row locks it takes: the same order everywhere means no deadlocks, and the chain lock is
held for as short a time as possible. An append rolled back with its transaction leaves no
trace, and no gap.

The lock works because each statement under READ COMMITTED (PostgreSQL's default, which
KittyLab never changes) sees every transaction committed before it started: the previous
holder committed before releasing the lock, so the newest entry is visible to the query
that follows. Under REPEATABLE READ it would not be, and the insert would fail on the
primary key rather than fork the chain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, select, text
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AuditEntry, User
from kittylab.domain.sanitize import sanitize_payload
from kittylab.safety.audit_chain import (
    GENESIS,
    AuditRecord,
    ChainReport,
    canonical_content,
    canonical_details,
    link_hash,
    verify,
)

# Any constant works; this one spells "kitty audit" in hex-ish.
_CHAIN_LOCK = 0x6B177A0D17

ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
"""Dotted lower-case names: ``lock.placed``, ``safety.approved``."""

# Column widths in ``audit_log``: checked here so a caller's mistake is a clear ValueError
# instead of a database error at flush.
_MAX_ACTION, _MAX_SUBJECT_TYPE, _MAX_SUBJECT_ID = 64, 64, 128

VERIFY_BATCH = 1000


def append(
    session: Session,
    *,
    action: str,
    actor_id: UUID | None,
    now: datetime,
    subject_type: str | None = None,
    subject_id: UUID | str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry and flush it. ``details`` are sanitized (secret-looking keys and
    values redacted, control characters removed) and then brought into the form ``jsonb``
    returns unchanged (``canonical_details``), so what is stored is what was hashed.
    ``now`` must carry a time zone. ``actor_id`` is None for the system or a local
    operator at the command line. Raises ``ValueError`` for a malformed action, an
    over-long subject or details JSON cannot hold."""
    if len(action) > _MAX_ACTION or not ACTION_PATTERN.match(action):
        raise ValueError(f"audit action {action!r} is not a dotted lower-case name")
    if now.tzinfo is None:
        raise ValueError("audit time needs a time zone")
    subject = str(subject_id) if subject_id is not None else None
    if subject_type is not None and len(subject_type) > _MAX_SUBJECT_TYPE:
        raise ValueError(f"audit subject type is longer than {_MAX_SUBJECT_TYPE} characters")
    if subject is not None and len(subject) > _MAX_SUBJECT_ID:
        raise ValueError(f"audit subject id is longer than {_MAX_SUBJECT_ID} characters")
    clean = canonical_details(sanitize_payload(dict(details or {})))
    if not isinstance(clean, dict):  # cannot happen: a mapping stays a mapping
        raise TypeError("audit details must be a mapping")
    content = canonical_content(
        occurred_at=now,
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject,
        details=clean,
    )
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
    entry = AuditEntry(
        seq=seq,
        occurred_at=now,
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject,
        details=clean,
        prev_hash=prev_hash,
        entry_hash=link_hash(prev_hash, content),
    )
    session.add(entry)
    session.flush()
    return entry


_RECORD_COLUMNS = (
    AuditEntry.seq,
    AuditEntry.occurred_at,
    AuditEntry.actor_id,
    AuditEntry.action,
    AuditEntry.subject_type,
    AuditEntry.subject_id,
    AuditEntry.details,
    AuditEntry.prev_hash,
    AuditEntry.entry_hash,
)


def records(session: Session, batch: int = VERIFY_BATCH) -> Iterator[AuditRecord]:
    """Every entry, oldest first, read ``batch`` at a time by seq (constant memory).
    Columns, not ORM objects: nothing lands in (or is evicted from) the caller's
    session."""
    after = 0
    while True:
        rows = session.execute(
            select(*_RECORD_COLUMNS)
            .where(AuditEntry.seq > after)
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        for row in rows:
            yield AuditRecord(*row)
        if len(rows) < batch:
            return
        after = rows[-1].seq


def verify_chain(
    session: Session, anchors: Mapping[int, str] | None = None, batch: int = VERIFY_BATCH
) -> ChainReport:
    """Check the whole chain, oldest first, in batches. ``anchors`` (seq → hash recorded
    elsewhere, e.g. an earlier report's head) also reveal truncation and rewrites."""
    return verify(records(session, batch), anchors)


@dataclass(frozen=True)
class AuditFilter:
    """What ``search`` selects. ``action`` is an exact name, or a prefix ending in ``.*``
    (``safety.*``). Times are inclusive at ``since`` and exclusive at ``until``."""

    action: str | None = None
    actor_id: UUID | None = None
    subject_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditRow:
    entry: AuditEntry
    actor_username: str | None


def _conditions(where: AuditFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.action is not None:
        if where.action.endswith(".*"):
            prefix = where.action[:-1]
            conditions.append(AuditEntry.action.startswith(prefix, autoescape=True))
        else:
            conditions.append(AuditEntry.action == where.action)
    if where.actor_id is not None:
        conditions.append(AuditEntry.actor_id == where.actor_id)
    if where.subject_id is not None:
        conditions.append(AuditEntry.subject_id == where.subject_id)
    if where.since is not None:
        conditions.append(AuditEntry.occurred_at >= where.since)
    if where.until is not None:
        conditions.append(AuditEntry.occurred_at < where.until)
    return conditions


def search(
    session: Session, where: AuditFilter, *, before_seq: int | None = None, limit: int = 50
) -> list[AuditRow]:
    """Matching entries, newest first, with the actor's username; only those older than
    ``before_seq`` when given (the keyset a cursor carries)."""
    stmt = (
        select(AuditEntry, User.username)
        .outerjoin(User, User.id == AuditEntry.actor_id)
        .where(*_conditions(where))
    )
    if before_seq is not None:
        stmt = stmt.where(AuditEntry.seq < before_seq)
    rows = session.execute(stmt.order_by(AuditEntry.seq.desc()).limit(limit)).all()
    return [AuditRow(entry, username) for entry, username in rows]
