"""Lockout/tagout: placing, removing and overriding personal locks on devices.

The rules are in ``kittylab.safety.lockout``; this module reads the facts, applies the
answers and leaves a record. Every act is audited (``lock.placed``, ``lock.removed``,
``lock.override``) naming the device, the lock's owner and the reason.

Concurrency: ``place`` and ``remove`` lock the device's row (``SELECT … FOR UPDATE``)
before they read its locks, so acts on one device are serialised. A check that must not
race with a lock being placed (the safety policy deciding a ``power_on``) takes the same
row lock before calling ``active_locks``. The partial unique index
``uq_device_locks_active`` is the backstop: one active lock per person per device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, DeviceLock, SafetyEvent, User
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import NotifySettings
from kittylab.domain.enums import SafetyEventType, SafetyStatus
from kittylab.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.domain.sanitize import sanitize_text
from kittylab.ports import JobQueue
from kittylab.records import alerts, audit
from kittylab.safety import event_details
from kittylab.safety.event_details import EventDetails
from kittylab.safety.lockout import LockFact, removal_refusal, when_text

# Stored reasons are one line of at most this many characters (the API refuses longer).
REASON_MAX = 2000

SUBJECT = "device_lock"


@dataclass(frozen=True)
class RemovalOutcome:
    """What ``remove`` did: the removed lock, the override's safety event when it was an
    override, and the notifications to its owner (deliver them after committing)."""

    lock: DeviceLock
    override_event: SafetyEvent | None = None
    notification_ids: list[UUID] = field(default_factory=list)


def active_locks(session: Session, device_id: UUID) -> list[LockFact]:
    """The device's locks that are on now, oldest first (empty for an unknown device)."""
    rows = session.execute(
        select(DeviceLock, User.display_name, Device.external_id)
        .join(User, User.id == DeviceLock.owner_id)
        .join(Device, Device.id == DeviceLock.device_id)
        .where(DeviceLock.device_id == device_id, DeviceLock.removed_at.is_(None))
        .order_by(DeviceLock.placed_at, DeviceLock.id)
    ).all()
    return [_fact(lock, owner_name, device_name) for lock, owner_name, device_name in rows]


def locks_query(
    *,
    active: bool | None = None,
    device_id: UUID | None = None,
    owner_id: UUID | None = None,
) -> Select[DeviceLock]:
    """Locks matching every filter given: ``active`` True for locks that are on, False for
    removed ones, None for both."""
    stmt = select(DeviceLock)
    if active is True:
        stmt = stmt.where(DeviceLock.removed_at.is_(None))
    elif active is False:
        stmt = stmt.where(DeviceLock.removed_at.is_not(None))
    if device_id is not None:
        stmt = stmt.where(DeviceLock.device_id == device_id)
    if owner_id is not None:
        stmt = stmt.where(DeviceLock.owner_id == owner_id)
    return stmt


def list_locks(
    session: Session,
    *,
    active: bool | None = None,
    device_id: UUID | None = None,
    owner_id: UUID | None = None,
) -> list[DeviceLock]:
    """Every lock matching the filters (see ``locks_query``), newest first."""
    stmt = locks_query(active=active, device_id=device_id, owner_id=owner_id)
    return list(session.scalars(stmt.order_by(DeviceLock.id.desc())))


def get(session: Session, lock_id: UUID) -> DeviceLock:
    lock = session.get(DeviceLock, lock_id)
    if lock is None:
        raise NotFound("lock", lock_id)
    return lock


def place(
    session: Session, device_id: UUID, owner_id: UUID, reason: str, now: datetime
) -> DeviceLock:
    """Put ``owner_id``'s lock on the device. Several people may each hold one (group
    lockout); a second active lock of the same person is ``Conflict``. Locking is always
    safe, so anyone may lock any device, retired ones included."""
    text = _required_text("reason", reason)
    device = _lock_device(session, device_id)
    owner = session.get(User, owner_id)
    if owner is None:
        raise NotFound("user", owner_id)
    mine = session.scalar(locks_query(active=True, device_id=device_id, owner_id=owner_id).limit(1))
    if mine is not None:
        raise _already_locked(device, mine)
    lock = DeviceLock(device_id=device_id, owner_id=owner_id, reason=text, placed_at=now)
    try:
        with session.begin_nested():
            session.add(lock)
            session.flush()
    except IntegrityError:
        # Only reachable when a writer skipped the device row lock; the index still holds.
        raise Conflict(f"you already hold a lock on {device.external_id}") from None
    audit.append(
        session,
        action="lock.placed",
        actor_id=owner_id,
        now=now,
        subject_type=SUBJECT,
        subject_id=lock.id,
        details=_details(lock, device, owner),
    )
    return lock


def remove(
    session: UnitOfWork,
    lock_id: UUID,
    by: Principal,
    now: datetime,
    override_reason: str | None = None,
    *,
    notify: NotifySettings | None = None,
    jobs: JobQueue | None = None,
) -> RemovalOutcome:
    """Take the lock off. Its owner may; anyone else only with ``override_reason`` and the
    safety role (``PermissionDenied`` saying why otherwise). An override is recorded as an
    approved ``override`` safety event initiated and approved by ``by``, linked from the
    lock, and — with ``notify`` — the owner is told (with ``jobs``, delivered once the
    removal commits; else by the notification sweep). A lock already off is ``Conflict``.

    The owner's own removal is never an override; a reason they give is kept in the audit
    entry as a note."""
    reason = None if override_reason is None else _required_text("overrideReason", override_reason)
    found = get(session, lock_id)
    # Device row first, then the lock: the same order as ``place``, so no deadlocks.
    device = _lock_device(session, found.device_id)
    lock = session.get(DeviceLock, lock_id, with_for_update=True, populate_existing=True)
    if lock is None:  # deleted between the two reads: locks are never deleted, but be exact
        raise NotFound("lock", lock_id)
    owner = session.get(User, lock.owner_id)
    if owner is None:  # a foreign key guarantees the owner; fail closed all the same
        raise NotFound("user", lock.owner_id)
    if lock.removed_at is not None:
        raise Conflict(_already_removed(session, lock, device))
    fact = _fact(lock, owner.display_name, device.external_id)
    refusal = removal_refusal(fact, by.user_id, by.roles, override=reason is not None)
    if refusal is not None:
        raise PermissionDenied(refusal)
    lock.removed_at = now
    lock.removed_by = by.user_id
    details = _details(lock, device, owner)
    if by.user_id == lock.owner_id:
        session.flush()
        if reason is not None:
            details["note"] = reason
        audit.append(
            session,
            action="lock.removed",
            actor_id=by.user_id,
            now=now,
            subject_type=SUBJECT,
            subject_id=lock.id,
            details=details,
        )
        return RemovalOutcome(lock)
    if reason is None:  # removal_refusal refuses this already; fail closed regardless
        raise PermissionDenied(f"only {owner.display_name} can remove this lock")
    event = SafetyEvent(
        event_type=SafetyEventType.OVERRIDE,
        status=SafetyStatus.APPROVED,
        device_id=device.id,
        zone_id=device.zone_id,
        initiated_by=by.user_id,
        approved_by=by.user_id,
        reason=reason,
        details=event_details.new_details(
            EventDetails(override="lock", lock_id=lock.id, owner_id=lock.owner_id)
        ),
        created_at=now,
        resolved_at=now,
    )
    session.add(event)
    session.flush()
    lock.override_event_id = event.id
    session.flush()
    notification_ids: list[UUID] = []
    if notify is not None:
        rows = alerts.notify_person(
            session,
            lock.owner_id,
            f"Your lock on {device.external_id} was overridden",
            f"{by.username} removed your lock on {device.external_id} (placed "
            f"{when_text(lock.placed_at)}: {lock.reason}) with a safety override: "
            f"{reason}. Check the device before you work on it again.",
            notify,
            related_safety_event_id=event.id,
            idempotency_key=f"lock-override:{lock.id}",
        )
        notification_ids = [row.id for row in rows]
        if jobs is not None:
            for notification_id in notification_ids:
                session.after_commit(jobs.defer_notification, notification_id)
    audit.append(
        session,
        action="lock.override",
        actor_id=by.user_id,
        now=now,
        subject_type=SUBJECT,
        subject_id=lock.id,
        details={**details, "override_reason": reason, "safety_event_id": str(event.id)},
    )
    return RemovalOutcome(lock, event, notification_ids)


def _lock_device(session: Session, device_id: UUID) -> Device:
    device = session.get(Device, device_id, with_for_update=True)
    if device is None:
        raise NotFound("device", device_id)
    return device


def _required_text(name: str, value: str) -> str:
    text = sanitize_text(value.strip(), REASON_MAX)
    if not text.strip():
        raise ValidationFailed(name, "must not be empty: say why")
    return text


def _fact(lock: DeviceLock, owner_name: str, device_name: str) -> LockFact:
    return LockFact(
        lock_id=lock.id,
        owner_id=lock.owner_id,
        owner_name=owner_name,
        reason=lock.reason,
        placed_at=lock.placed_at,
        device_name=device_name,
    )


def _details(lock: DeviceLock, device: Device, owner: User) -> dict[str, Any]:
    return {
        "device_id": str(device.id),
        "device": device.external_id,
        "owner_id": str(owner.id),
        "owner": owner.username,
        "reason": lock.reason,
    }


def _already_locked(device: Device, mine: DeviceLock) -> Conflict:
    return Conflict(
        f"you already hold a lock on {device.external_id} (lock {mine.id}, placed "
        f"{when_text(mine.placed_at)})"
    )


def _already_removed(session: Session, lock: DeviceLock, device: Device) -> str:
    remover = session.get(User, lock.removed_by) if lock.removed_by else None
    who = f" by {remover.display_name}" if remover is not None else ""
    when = when_text(lock.removed_at) if lock.removed_at else "an earlier time"
    return f"this lock on {device.external_id} was already removed{who} at {when}"
