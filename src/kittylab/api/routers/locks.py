"""``/api/locks`` and ``/api/devices/{id}/locks``: lockout/tagout, personal locks on
devices (``kittylab.safety.locks``). A device's locks sit under its URL, but the lock is
the resource (read, listed and removed at ``/api/locks``, rendered the same everywhere),
so every lockout route is here rather than in ``devices.py``.

Anyone signed in may lock out a device (locking is always safe) and read every lock (a
tag on a machine is for everyone to see). A lock comes off by its owner, or by the safety
role overriding it with a reason; any other attempt is 403 saying whose lock it is."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, status
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device, DeviceLock, User
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404
from kittylab.api.schemas import LockOut, LockPlace, LockRemove
from kittylab.bootstrap import Container
from kittylab.safety import locks, workflow

router = APIRouter(prefix="/api", tags=["lockout"])


def _out(session: Session, lock: DeviceLock) -> LockOut:
    # Pages are small and the same people and devices recur: the session's identity map
    # answers repeats without a query.
    device = session.get(Device, lock.device_id)
    owner = session.get(User, lock.owner_id)
    return LockOut(
        id=lock.id,
        device_id=lock.device_id,
        device_external_id=device.external_id if device else str(lock.device_id),
        owner_id=lock.owner_id,
        owner_name=owner.display_name if owner else str(lock.owner_id),
        reason=lock.reason,
        placed_at=lock.placed_at,
        active=lock.removed_at is None,
        removed_at=lock.removed_at,
        removed_by=lock.removed_by,
        override_event_id=lock.override_event_id,
    )


@router.post(
    "/devices/{device_id}/locks",
    response_model=LockOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "You already hold a lock on this device."}},
)
def place_lock(
    device_id: UUID,
    body: LockPlace,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> LockOut:
    """Put your personal lock on the device. While any lock is on, every intent that adds
    energy or motion (power on, heat, print start or resume, unlock, custom intents) is
    refused for everyone, and commands not yet sent are failed with the lock as their
    reason. Several people may each hold a lock (group lockout); each removes their own."""
    lock = workflow.lock_out(
        uow,
        device_id,
        caller.user_id,
        body.reason,
        c.clock(),
        notify=c.settings.notify,
        jobs=c.jobs,
    )
    return _out(uow, lock)


@router.get("/devices/{device_id}/locks", response_model=list[LockOut])
def device_locks(device_id: UUID, _: Caller, uow: UnitOfWork) -> list[LockOut]:
    """The locks on the device now, oldest first (its history: ``/api/locks?deviceId=``)."""
    get_or_404(uow, Device, device_id, "device")
    facts = locks.active_locks(uow, device_id)
    return [_out(uow, locks.get(uow, fact.lock_id)) for fact in facts]


@router.get("/locks", response_model=Page[LockOut])
def list_locks(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    active: Annotated[
        bool | None, Query(description="true: locks on now; false: removed; omitted: both.")
    ] = None,
    device_id: Annotated[UUID | None, Query(alias="deviceId")] = None,
    owner_id: Annotated[UUID | None, Query(alias="ownerId")] = None,
) -> Page[LockOut]:
    stmt = locks.locks_query(active=active, device_id=device_id, owner_id=owner_id)
    return paginate(uow, stmt, DeviceLock.id, cursor, limit, lambda row: _out(uow, row))


@router.get("/locks/{lock_id}", response_model=LockOut)
def get_lock(lock_id: UUID, _: Caller, uow: UnitOfWork) -> LockOut:
    return _out(uow, locks.get(uow, lock_id))


@router.post(
    "/locks/{lock_id}/remove",
    response_model=LockOut,
    responses={
        403: {"description": "Not your lock, and no safety-role override."},
        409: {"description": "The lock is already off."},
    },
)
def remove_lock(
    lock_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    body: Annotated[LockRemove | None, Body()] = None,
) -> LockOut:
    """Take a lock off. Your own: no body needed. Someone else's: only the safety role,
    with ``overrideReason``; that is recorded as an approved ``override`` safety event
    (``overrideEventId``) and the lock's owner is notified."""
    override = body.override_reason if body is not None else None
    outcome = locks.remove(
        uow, lock_id, caller, c.clock(), override, notify=c.settings.notify, jobs=c.jobs
    )
    return _out(uow, outcome.lock)
