"""Lockout/tagout rules: what a lock stops, how a refusal reads, who may remove a lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from kittylab.domain.command_rules import SAFE_INTENTS
from kittylab.domain.devices import INTENT_CATALOGUE
from kittylab.domain.enums import Role
from kittylab.safety.lockout import (
    LOCKOUT_TABLE,
    REASON_IN_MESSAGE,
    LockClass,
    LockFact,
    lock_class,
    lock_refusal,
    removal_refusal,
    stopped_by_locks,
)

SAM = UUID("00000000-0000-0000-0000-0000000000a1")
OLIVIA = UUID("00000000-0000-0000-0000-0000000000b2")


def lock(
    owner_id: UUID = SAM,
    owner_name: str = "Sam Safety",
    reason: str = "changing the spindle belt",
    at: datetime = datetime(2026, 11, 27, 9, 12, tzinfo=UTC),
) -> LockFact:
    return LockFact(uuid4(), owner_id, owner_name, reason, at, device_name="cnc-spindle")


ADDS_ENERGY = [
    "power_on",
    "door_unlock",
    "printer_heat",
    "print_start",
    "print_resume",
    "light_on",
    "light_set_brightness",
]
SAFE_DIRECTION = [
    "power_off",
    "door_lock",
    "print_pause",
    "print_cancel",
    "printer_cooldown",
    "light_off",
]
READS = ["sensor_read", "printer_status", "camera_snapshot"]


@pytest.mark.parametrize("intent", ADDS_ENERGY)
def test_a_lock_refuses_every_intent_that_adds_energy_or_motion(intent: str) -> None:
    assert lock_class(intent) is LockClass.ADDS_ENERGY
    assert lock_refusal(intent, [lock()]) == (
        "cnc-spindle is locked out by Sam Safety since 2026-11-27 09:12 UTC "
        "(changing the spindle belt); only Sam Safety can remove the lock"
    )


@pytest.mark.parametrize("intent", ["spindle_start", "laser_fire", "chuck_open", ""])
def test_an_intent_the_table_does_not_know_adds_energy(intent: str) -> None:
    # Fail closed: a manifest's custom intent is refused by a lock unless listed as safe.
    assert lock_class(intent) is LockClass.ADDS_ENERGY
    assert lock_refusal(intent, [lock()]) is not None


@pytest.mark.parametrize("intent", SAFE_DIRECTION)
def test_the_safe_direction_is_never_refused_by_a_lock(intent: str) -> None:
    assert lock_class(intent) is LockClass.SAFE_DIRECTION
    assert not stopped_by_locks(intent)
    assert lock_refusal(intent, [lock()]) is None


@pytest.mark.parametrize("intent", READS)
def test_reads_are_never_refused_by_a_lock(intent: str) -> None:
    assert lock_class(intent) is LockClass.READ
    assert lock_refusal(intent, [lock()]) is None


def test_the_table_covers_every_catalogue_intent() -> None:
    assert set(LOCKOUT_TABLE) == set(INTENT_CATALOGUE)
    assert set(LOCKOUT_TABLE) == set(ADDS_ENERGY) | set(SAFE_DIRECTION) | set(READS)


def test_every_safe_intent_but_a_light_switched_on_is_safe_for_a_lock() -> None:
    # ``light_on`` is never held for approval, but on the locked light it adds energy.
    assert {i for i in SAFE_INTENTS if stopped_by_locks(i)} == {"light_on"}


def test_no_locks_means_no_refusal() -> None:
    assert lock_refusal("power_on", []) is None


def test_group_lockout_names_every_holder_oldest_first() -> None:
    later = lock(OLIVIA, "Olivia", "clearing chips", datetime(2026, 11, 27, 10, 5, tzinfo=UTC))
    refusal = lock_refusal("power_on", [later, lock()])
    assert refusal == (
        "cnc-spindle is locked out by 2 people: by Sam Safety since 2026-11-27 09:12 UTC "
        "(changing the spindle belt); and by Olivia since 2026-11-27 10:05 UTC "
        "(clearing chips); each lock comes off only by its holder (Sam Safety and Olivia)"
    )


def test_a_long_reason_is_cut_in_the_refusal() -> None:
    refusal = lock_refusal("power_on", [lock(reason="x" * 500)])
    assert refusal is not None
    assert "x" * (REASON_IN_MESSAGE - 1) + "…)" in refusal
    assert "x" * REASON_IN_MESSAGE not in refusal


def test_times_are_shown_in_utc_whatever_zone_they_come_in() -> None:
    berlin = datetime(2026, 11, 27, 10, 12, tzinfo=timezone(timedelta(hours=1)))
    refusal = lock_refusal("power_on", [lock(at=berlin)])
    assert refusal is not None and "since 2026-11-27 09:12 UTC" in refusal


def test_the_owner_may_remove_their_lock_without_any_role() -> None:
    assert removal_refusal(lock(), SAM, [], override=False) is None
    assert removal_refusal(lock(), SAM, [Role.OPERATOR], override=True) is None


def test_another_operator_may_not_remove_someone_elses_lock() -> None:
    refusal = removal_refusal(lock(), OLIVIA, [Role.OPERATOR], override=False)
    assert refusal == (
        "this lock on cnc-spindle belongs to Sam Safety; only Sam Safety can remove it "
        "(the safety role can override it with a reason)"
    )


def test_an_operator_override_needs_the_safety_role() -> None:
    refusal = removal_refusal(lock(), OLIVIA, [Role.OPERATOR, Role.ENGINEER], override=True)
    assert refusal == "overriding Sam Safety's lock on cnc-spindle needs the safety role"


def test_the_admin_role_alone_cannot_override_a_lock() -> None:
    refusal = removal_refusal(lock(), OLIVIA, [Role.ADMIN], override=True)
    assert refusal is not None
    assert "admin role cannot override" in refusal and "lockout is personal" in refusal


def test_the_safety_role_may_override_only_with_a_reason() -> None:
    assert removal_refusal(lock(), OLIVIA, [Role.SAFETY], override=True) is None
    assert removal_refusal(lock(), OLIVIA, [Role.SAFETY, Role.ADMIN], override=True) is None
    assert removal_refusal(lock(), OLIVIA, [Role.SAFETY], override=False) is not None
