"""The audit hash chain, pure: every kind of tampering is reported at the entry it hit."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

import pytest

from kittylab.safety.audit_chain import (
    GENESIS,
    AuditRecord,
    BreakKind,
    ChainBreak,
    canonical_content,
    canonical_details,
    entry_hash,
    link_hash,
    verify,
)

ACTOR = UUID("01900000-0000-7000-8000-000000000001")
T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


def _chain(n: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        draft = AuditRecord(
            seq=seq,
            occurred_at=T0 + timedelta(seconds=seq),
            actor_id=ACTOR if seq % 2 else None,
            action="lock.placed",
            subject_type="device",
            subject_id=f"dev-{seq}",
            details={"reason": f"maintenance {seq}", "n": seq},
            prev_hash=prev,
            entry_hash="",
        )
        record = replace(draft, entry_hash=entry_hash(draft, prev))
        records.append(record)
        prev = record.entry_hash
    return records


def _rehash_from(records: list[AuditRecord], start: int) -> list[AuditRecord]:
    """What an attacker does after tampering: recompute every hash from index ``start``."""
    out = records[:start]
    prev = out[-1].entry_hash if out else GENESIS
    for record in records[start:]:
        fixed = replace(record, prev_hash=prev)
        fixed = replace(fixed, entry_hash=entry_hash(fixed, prev))
        out.append(fixed)
        prev = fixed.entry_hash
    return out


def _kinds(breaks: tuple[ChainBreak, ...]) -> list[tuple[int, BreakKind]]:
    return [(b.seq, b.kind) for b in breaks]


def test_an_untouched_chain_is_intact_and_its_head_is_the_last_hash() -> None:
    records = _chain(5)
    report = verify(records)
    assert report.intact
    assert (report.entries, report.head, report.head_seq) == (5, records[-1].entry_hash, 5)


def test_an_empty_chain_is_intact_with_the_genesis_head() -> None:
    report = verify([])
    assert report.intact
    assert (report.entries, report.head, report.head_seq) == (0, GENESIS, 0)


def test_an_edited_entry_is_reported_alone_as_edited() -> None:
    records = _chain(5)
    records[2] = replace(records[2], details={"reason": "nothing to see", "n": 3})
    report = verify(records)
    assert _kinds(report.breaks) == [(3, BreakKind.EDITED)]
    assert str(report.breaks[0]) == "entry 3: its content does not match its hash (edited)"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor_id", None),
        ("action", "lock.removed"),
        ("subject_type", "zone"),
        ("subject_id", "dev-99"),
        ("occurred_at", T0 + timedelta(seconds=3, microseconds=1)),
    ],
)
def test_every_field_is_covered_by_the_hash(field: str, value: object) -> None:
    records = _chain(3)
    records[0] = replace(records[0], **{field: value})  # type: ignore[arg-type]
    assert _kinds(verify(records).breaks) == [(1, BreakKind.EDITED)]


def test_an_edit_with_its_own_hash_recomputed_breaks_the_next_link() -> None:
    records = _chain(5)
    edited = replace(records[2], details={"reason": "forged"})
    records[2] = replace(edited, entry_hash=entry_hash(edited, edited.prev_hash))
    assert _kinds(verify(records).breaks) == [(4, BreakKind.UNLINKED)]


def test_a_deletion_in_the_middle_is_a_gap_and_a_broken_link() -> None:
    records = _chain(8)
    del records[4:6]  # seq 5 and 6
    report = verify(records)
    assert _kinds(report.breaks) == [(5, BreakKind.MISSING), (7, BreakKind.UNLINKED)]
    assert str(report.breaks[0]) == "entries 5..6 are missing (deleted)"
    assert str(report.breaks[1]).startswith("entry 7: does not link")


def test_a_deletion_at_the_start_is_caught() -> None:
    records = _chain(4)[1:]
    report = verify(records)
    assert _kinds(report.breaks) == [(1, BreakKind.MISSING), (2, BreakKind.UNLINKED)]
    assert str(report.breaks[0]) == "entry 1 is missing (deleted)"


def test_a_deletion_at_the_start_with_recomputed_hashes_is_still_a_gap() -> None:
    records = _rehash_from(_chain(4)[2:], 0)  # now 3 links to GENESIS, all hashes valid
    assert _kinds(verify(records).breaks) == [(1, BreakKind.MISSING)]


def test_recomputed_hashes_after_a_deletion_are_still_caught_by_the_gap() -> None:
    records = _chain(6)
    del records[2]
    assert _kinds(verify(_rehash_from(records, 2)).breaks) == [(3, BreakKind.MISSING)]


def test_an_inserted_entry_breaks_the_link_after_it() -> None:
    records = _chain(4)
    forged = AuditRecord(
        seq=3,
        occurred_at=T0,
        actor_id=None,
        action="safety.approved",
        subject_type=None,
        subject_id=None,
        details={},
        prev_hash=records[1].entry_hash,
        entry_hash="",
    )
    forged = replace(forged, entry_hash=entry_hash(forged, forged.prev_hash))
    renumbered = [replace(r, seq=r.seq + 1) for r in records[2:]]
    report = verify([*records[:2], forged, *renumbered])
    # The forged entry links and hashes correctly; the original 3 (now 4) no longer links.
    assert _kinds(report.breaks) == [(4, BreakKind.UNLINKED)]


def test_swapping_two_entries_is_caught() -> None:
    records = _chain(5)
    a, b = records[1], records[2]
    records[1], records[2] = replace(b, seq=2), replace(a, seq=3)
    assert _kinds(verify(records).breaks) == [
        (2, BreakKind.UNLINKED),
        (3, BreakKind.UNLINKED),
        (4, BreakKind.UNLINKED),
    ]


def test_duplicate_sequence_numbers_are_reported() -> None:
    records = _chain(3)
    report = verify([records[0], records[1], records[1], records[2]])
    assert (2, BreakKind.UNLINKED) in _kinds(report.breaks)
    assert not report.intact


def test_truncation_is_invisible_without_an_anchor_and_caught_with_one() -> None:
    records = _chain(6)
    head = verify(records)
    truncated = records[:4]
    assert verify(truncated).intact  # what the chain alone cannot show
    report = verify(truncated, anchors={head.head_seq: head.head})
    assert _kinds(report.breaks) == [(6, BreakKind.ANCHOR)]
    assert "is not in the log" in str(report.breaks[0])


def test_a_rewrite_from_the_start_is_caught_by_an_anchor() -> None:
    records = _chain(5)
    anchor = {5: records[4].entry_hash}
    rewritten = _rehash_from([replace(records[0], details={"reason": "forged"}), *records[1:]], 0)
    assert verify(rewritten).intact
    assert _kinds(verify(rewritten, anchors=anchor).breaks) == [(5, BreakKind.ANCHOR)]
    assert verify(records, anchors=anchor).intact


def test_stored_content_no_writer_produces_counts_as_edited() -> None:
    records = _chain(2)
    records[1] = replace(records[1], details={"x": math.nan})
    assert _kinds(verify(records).breaks) == [(2, BreakKind.EDITED)]


def _jsonb_round_trip(value: object) -> object:
    """What PostgreSQL's jsonb hands back: numbers are exact decimals, read by json.loads
    (an integral decimal such as 1e20 comes back as an int, -0.0 as 0.0)."""

    def number(text: str) -> object:
        d = Decimal(text)
        if d == 0:
            d = abs(d)
        plain = format(d, "f")
        return json.loads(plain)

    return json.loads(json.dumps(value), parse_float=number, parse_int=number)


@pytest.mark.parametrize(
    "details",
    [
        {"float": 0.1, "big": 1e20, "huge": 1.5e300, "tiny": 1e-7, "neg_zero": -0.0},
        {"one": 1.0, "int": 10**30, "decimal": Decimal("2.50"), "exact": Decimal("7")},
        {"text": "Grüße, 温度 🐱", "nested": [[1, 2.5, {"a": [True, None]}], []]},
    ],
)
def test_details_hash_the_same_after_a_jsonb_round_trip(details: dict[str, object]) -> None:
    stored = canonical_details(details)
    assert isinstance(stored, dict)
    back = _jsonb_round_trip(stored)
    assert isinstance(back, dict)
    kwargs = {
        "occurred_at": T0,
        "actor_id": ACTOR,
        "action": "safety.approval",
        "subject_type": None,
        "subject_id": None,
    }
    assert canonical_content(**kwargs, details=back) == canonical_content(  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
        details=stored,
    )


def test_canonical_details_turns_common_types_into_their_text() -> None:
    class Colour(StrEnum):
        RED = "red"

    uid = UUID(int=5)
    assert canonical_details(
        {
            "id": uid,
            "at": datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))),
            "day": date(2026, 1, 2),
            "colour": Colour.RED,
            "pair": (1, 2),
        }
    ) == {
        "id": str(uid),
        "at": "2026-01-01T10:00:00.000000+00:00",
        "day": "2026-01-02",
        "colour": "red",
        "pair": [1, 2],
    }
    assert type(canonical_details({"c": Colour.RED})["c"]) is str  # type: ignore[index]


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"x": math.inf}, "details.x: inf"),
        ({"x": [math.nan]}, "details.x.0: nan"),
        ({"x": "a\x00b"}, "details.x: text with NUL"),
        ({1: "a"}, "details: key 1 is not text"),
        ({"x": object()}, "details.x: a object cannot"),
        ({"at": datetime(2026, 1, 1)}, "details.at: a time needs a time zone"),
    ],
)
def test_details_jsonb_cannot_hold_are_refused_naming_the_path(
    details: dict[object, object], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")):
        canonical_details(details)


def test_timestamps_keep_microseconds_and_need_a_zone() -> None:
    base = {"actor_id": None, "action": "a.b", "subject_type": None, "subject_id": None}
    one = canonical_content(occurred_at=T0, details={}, **base)  # type: ignore[arg-type]
    later = canonical_content(
        occurred_at=T0 + timedelta(microseconds=1),
        details={},
        **base,  # type: ignore[arg-type]
    )
    assert b"09:00:00.123456+00:00" in one
    assert one != later
    same_instant = T0.astimezone(timezone(timedelta(hours=-5)))
    assert canonical_content(occurred_at=same_instant, details={}, **base) == one  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time zone"):
        canonical_content(occurred_at=datetime(2026, 1, 1), details={}, **base)  # type: ignore[arg-type]


def test_the_link_hash_depends_on_the_previous_hash() -> None:
    assert link_hash(GENESIS, b"x") != link_hash("1" * 64, b"x")
