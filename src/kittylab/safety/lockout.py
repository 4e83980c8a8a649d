"""Lockout/tagout, the rules. A person places a personal lock on a device before working on
it; while any lock is on, nothing may energise the device or open its guard, and only the
person who placed a lock may take it off (or the safety role, overriding it on the record).
What a lock stops is the lockout table (``LOCKOUT_TABLE``): every intent that adds energy
or motion, for everyone; the safe direction and reads pass.

Pure: the lock service (``kittylab.safety.locks``) feeds these rules ``LockFact``\\ s read
from the database and the caller's roles, and acts on the answer. Every refusal is a
sentence an operator can act on: whose lock, since when, why, and who can remove it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

from kittylab.domain.enums import Role


class LockClass(StrEnum):
    """What an intent does to a locked device (the lockout table below)."""

    ADDS_ENERGY = "adds_energy"
    """Energises the device, sets it in motion or opens its guard: refused while locked."""
    SAFE_DIRECTION = "safe_direction"
    """Takes energy out or closes the device up: always allowed, locked or not."""
    READ = "read"
    """Changes nothing: always allowed."""


# The lockout table: intent → what it does to a locked device. A lock isolates every energy
# source of its device, whoever asks and whatever the zone's policies say; only the safe
# direction and reads pass. An intent not listed here (a manifest's custom ``spindle_start``,
# ``laser_fire``, ``chuck_open`` …) adds energy: unknown is refused, never let through.
#
# Lights: ``light_on`` is a safe intent for the *policy* (it is never held for approval:
# seeing the room is safer), but on a *locked* light it adds energy to the very fixture
# someone locked to work on, so the lock refuses it. A lock on a light stops only that
# light; lights elsewhere in the zone are unaffected.
LOCKOUT_TABLE: Mapping[str, LockClass] = {
    "power_on": LockClass.ADDS_ENERGY,
    "door_unlock": LockClass.ADDS_ENERGY,
    "printer_heat": LockClass.ADDS_ENERGY,
    "print_start": LockClass.ADDS_ENERGY,
    "print_resume": LockClass.ADDS_ENERGY,
    "light_on": LockClass.ADDS_ENERGY,
    "light_set_brightness": LockClass.ADDS_ENERGY,
    "power_off": LockClass.SAFE_DIRECTION,
    "door_lock": LockClass.SAFE_DIRECTION,
    "print_pause": LockClass.SAFE_DIRECTION,
    "print_cancel": LockClass.SAFE_DIRECTION,
    "printer_cooldown": LockClass.SAFE_DIRECTION,
    "light_off": LockClass.SAFE_DIRECTION,
    "sensor_read": LockClass.READ,
    "printer_status": LockClass.READ,
    "camera_snapshot": LockClass.READ,
}

# A refusal quotes each holder's reason; a long one is cut so the sentence stays readable.
REASON_IN_MESSAGE = 120


def lock_class(intent: str) -> LockClass:
    """The lockout table's class of ``intent``; an unlisted intent adds energy (fail closed)."""
    return LOCKOUT_TABLE.get(intent, LockClass.ADDS_ENERGY)


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


def stopped_by_locks(intent: str) -> bool:
    """Whether a lock stops ``intent``: everything that adds energy or motion does, for
    everyone. The safe direction never is: a locked machine must still be switchable off,
    its print paused and its door lockable."""
    return lock_class(intent) is LockClass.ADDS_ENERGY


def lock_refusal(intent: str, locks: Sequence[LockFact]) -> str | None:
    """Why ``intent`` is refused by the device's active ``locks``, or ``None`` when the
    locks do not stop it (no locks, or an intent a lock never stops). With several
    holders (group lockout) every one is named: each must remove their own lock."""
    if not locks or not stopped_by_locks(intent):
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
