"""``/api/audit``: the audit log, for the safety and admin roles: its entries (filtered,
newest first, cursor-paginated by ``seq``) and a verification of its hash chain."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from kittylab.api.auth import SafetyCaller, UnitOfWork
from kittylab.api.pagination import CursorParam, Limit, Page
from kittylab.api.schemas import AuditBreakOut, AuditEntryOut, AuditVerifyOut
from kittylab.domain.errors import ValidationFailed
from kittylab.records import audit

router = APIRouter(prefix="/api/audit", tags=["audit"])

# A full name (lock.placed) or a prefix of whole segments ending in ".*" (safety.*).
ACTION_FILTER = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*|(\.[a-z][a-z0-9_]*))$"


def encode_seq_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(seq.to_bytes(8, "big")).decode().rstrip("=")


def decode_seq_cursor(cursor: str) -> int:
    """The seq a cursor carries. The shared UUID cursor does not fit: entries are keyed
    by their place in the chain."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 8 or (seq := int.from_bytes(raw, "big")) < 1:
        raise ValidationFailed("cursor", "is not a cursor this API issued")
    return seq


def _entry(row: audit.AuditRow) -> AuditEntryOut:
    e = row.entry
    return AuditEntryOut(
        seq=e.seq,
        occurred_at=e.occurred_at,
        actor_id=e.actor_id,
        actor_username=row.actor_username,
        action=e.action,
        subject_type=e.subject_type,
        subject_id=e.subject_id,
        details=e.details,
        prev_hash=e.prev_hash,
        entry_hash=e.entry_hash,
    )


@router.get("", response_model=Page[AuditEntryOut])
def list_audit_entries(
    _: SafetyCaller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=ACTION_FILTER,
            description="An action (`lock.placed`) or a prefix (`safety.*`).",
        ),
    ] = None,
    actor_id: Annotated[UUID | None, Query(alias="actorId")] = None,
    subject_id: Annotated[
        str | None, Query(alias="subjectId", min_length=1, max_length=128, pattern=r"^[^\x00]*$")
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="At or after (inclusive).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before (exclusive).")] = None,
) -> Page[AuditEntryOut]:
    """Entries newest first. ``nextCursor`` leads to older ones."""
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until", "must be later than since")
    where = audit.AuditFilter(
        action=action, actor_id=actor_id, subject_id=subject_id, since=since, until=until
    )
    before = decode_seq_cursor(cursor) if cursor else None
    rows = audit.search(uow, where, before_seq=before, limit=limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    return Page[AuditEntryOut](
        items=[_entry(r) for r in page],
        next_cursor=encode_seq_cursor(page[-1].entry.seq) if more else None,
    )


@router.get("/verify", response_model=AuditVerifyOut)
def verify_audit_chain(
    _: SafetyCaller,
    uow: UnitOfWork,
    anchor: Annotated[
        list[str] | None,
        Query(
            max_length=100,
            description="`SEQ:HASH` of an entry recorded earlier (an earlier head); "
            "reveals truncation and rewrites. Repeatable.",
        ),
    ] = None,
) -> AuditVerifyOut:
    """Walk the whole chain (in batches) and report every break."""
    anchors: dict[int, str] = {}
    for index, value in enumerate(anchor or []):
        seq, sep, digest = value.partition(":")
        if not (sep and seq.isdigit() and len(seq) <= 18 and _is_hash(digest)):
            raise ValidationFailed(f"anchor.{index}", "is not SEQ:HASH (64 hex digits)")
        anchors[int(seq)] = digest
    report = audit.verify_chain(uow, anchors)
    return AuditVerifyOut(
        intact=report.intact,
        entries=report.entries,
        head=report.head,
        head_seq=report.head_seq,
        breaks=[AuditBreakOut(seq=b.seq, kind=b.kind.value, problem=str(b)) for b in report.breaks],
    )


def _is_hash(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
