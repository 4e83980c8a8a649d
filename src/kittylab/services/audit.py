"""Appending to and verifying the hash-chained audit log (``kittylab.safety.audit_chain``).

``append`` takes a transaction-scoped advisory lock, so concurrent appends form one chain;
the lock is held until the caller's transaction ends. Append last in a transaction, after
any row locks it takes: the same order everywhere means no deadlocks, and the chain lock is
held for as short a time as possible. An append rolled back with its transaction leaves no
trace, and no gap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AuditEntry
from kittylab.domain.sanitize import sanitize_payload
from kittylab.safety.audit_chain import (
    GENESIS,
    AuditRecord,
    ChainReport,
    canonical_content,
    link_hash,
    verify,
)

# Any constant works; this one spells "kitty audit" in hex-ish.
_CHAIN_LOCK = 0x6B177A0D17


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
    """Append one entry. ``details`` is sanitized (secret-looking keys redacted)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
    clean: dict[str, Any] = sanitize_payload(dict(details or {}))
    subject = str(subject_id) if subject_id is not None else None
    content = canonical_content(
        occurred_at=now,
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject,
        details=clean,
    )
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


def _records(session: Session, batch: int = 1000) -> Iterator[AuditRecord]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield AuditRecord(
                seq=row.seq,
                occurred_at=row.occurred_at,
                actor_id=row.actor_id,
                action=row.action,
                subject_type=row.subject_type,
                subject_id=row.subject_id,
                details=row.details,
                prev_hash=row.prev_hash,
                entry_hash=row.entry_hash,
            )
        after = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session) -> ChainReport:
    """Check the whole chain, oldest first, in batches (constant memory)."""
    return verify(_records(session))
