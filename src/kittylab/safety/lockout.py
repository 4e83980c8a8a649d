"""Lockout/tagout, the rules. A person places a personal lock on a device before working on
it; while any lock is on, nothing may energise the device or open its guard, and only the
person who placed a lock may take it off (or the safety role, overriding it on the record).

Pure: the lock service (``kittylab.safety.locks``) feeds these rules ``LockFact``\\ s read
from the database and the caller's roles, and acts on the answer. Every refusal is a
sentence an operator can act on: whose lock, since when, why, and who can remove it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from kittylab.domain.command_rules import SAFE_INTENTS
from kittylab.domain.enums import Role

# What a lock stops, whatever the zone's policies say: energising a machine and opening
# the door to it. Any other intent a policy marks hazardous is stopped as well.
LOCKABLE_INTENTS = frozenset({"power_on", "door_unlock"})

# A refusal quotes each holder's reason; a long one is cut so the sentence stays readable.
REASON_IN_MESSAGE = 120


@dataclass(frozen=True)
class LockFact:
    """One active lock, as the rules see it. ``device_name`` is the device's external id
    (``cnc-spindle``), the name operators use; it defaults so older callers still work."""

    lock_id: UUID
    owner_id: UUID
    owner_name: str
    reason: str
    placed_at: datetime
    device_name: str = "the device"


def stopped_by_locks(intent: str, hazardous: bool) -> bool:
    """Whether a lock stops ``intent``. Intents that make the lab safer never are: a locked
    machine must still be switchable off and its door lockable."""
    if intent in SAFE_INTENTS:
        return False
    return hazardous or intent in LOCKABLE_INTENTS


def lock_refusal(intent: str, locks: Sequence[LockFact], hazardous: bool) -> str | None:
    """Why ``intent`` is refused by the device's active ``locks``, or ``None`` when the
    locks do not stop it (no locks, or an intent a lock never stops). With several
    holders (group lockout) every one is named: each must remove their own lock."""
    if not locks or not stopped_by_locks(intent, hazardous):
        return None
    ordered = sorted(locks, key=lambda lock: (lock.placed_at, str(lock.lock_id)))
    device = ordered[0].device_name
    holders = "; and by ".join(_holder(lock) for lock in ordered)
    names = _names(ordered)
    if len(ordered) == 1:
        return f"{device} is locked out by {holders}; only {names} can remove the lock"
    return (
        f"{device} is locked out by {len(ordered)} people: by {holders}; "
        f"each lock comes off only by its holder ({names})"
    )


def removal_refusal(
    lock: LockFact, by_user_id: UUID, by_roles: Collection[Role], override: bool
) -> str | None:
    """Why ``by_user_id`` (holding ``by_roles``) may not remove ``lock``, or ``None``.

    The owner always may. Anyone else only by an override, and an override needs the
    safety role: the admin role alone is not enough, since a lock protects the person who
    placed it, not a configuration. (The override's written reason is checked where it is
    read; here ``override`` says one was given.)"""
    if by_user_id == lock.owner_id:
        return None
    owner = lock.owner_name
    if not override:
        return (
            f"this lock on {lock.device_name} belongs to {owner}; only {owner} can remove it "
            "(the safety role can override it with a reason)"
        )
    if Role.SAFETY in by_roles:
        return None
    if Role.ADMIN in by_roles:
        return (
            f"the admin role cannot override {owner}'s lock on {lock.device_name}: lockout is "
            "personal; only its owner or the safety role can remove it"
        )
    return f"overriding {owner}'s lock on {lock.device_name} needs the safety role"


def _holder(lock: LockFact) -> str:
    reason = lock.reason.strip()
    if len(reason) > REASON_IN_MESSAGE:
        reason = reason[: REASON_IN_MESSAGE - 1] + "…"
    return f"{lock.owner_name} since {when_text(lock.placed_at)} ({reason})"


def _names(locks: Sequence[LockFact]) -> str:
    unique = list(dict.fromkeys(lock.owner_name for lock in locks))
    if len(unique) == 1:
        return unique[0]
    return ", ".join(unique[:-1]) + " and " + unique[-1]


def when_text(moment: datetime) -> str:
    """``moment`` as operators read it in a refusal: ``2026-11-27 09:12 UTC``."""
    # The lab has no configured time zone; UTC, said so, is never misread.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
