"""Notifications: the outbox of messages to people."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, status
from sqlalchemy import select

from kittylab.adapters.db.tables import Notification
from kittylab.api.auth import SafetyCaller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.schemas import NotificationCreate, NotificationOut
from kittylab.bootstrap import Container
from kittylab.domain.enums import NotificationChannel, NotificationStatus
from kittylab.domain.errors import NotFound
from kittylab.services import notifications

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


@router.get("", response_model=Page[NotificationOut])
def list_notifications(
    _: SafetyCaller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: NotificationStatus | None = None,
    channel: NotificationChannel | None = None,
) -> Page[NotificationOut]:
    stmt = where_equal(
        select(Notification), (Notification.status, status), (Notification.channel, channel)
    )
    return paginate(uow, stmt, Notification.id, cursor, limit, NotificationOut.model_validate)


@router.get("/{notification_id}", response_model=NotificationOut)
def get_notification(notification_id: UUID, _: SafetyCaller, uow: UnitOfWork) -> Notification:
    row = uow.get(Notification, notification_id)
    if row is None:
        raise NotFound("notification", notification_id)
    return row


@router.post("", response_model=NotificationOut, status_code=status.HTTP_202_ACCEPTED)
def send_notification(
    body: NotificationCreate,
    _: SafetyCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Notification:
    """Queue a message (for instance, to test a channel). Delivery happens in the
    background with retries; poll this notification for its outcome."""
    row = notifications.enqueue(
        uow,
        channel=body.channel,
        recipient=body.recipient,
        title=body.title,
        body=body.body,
        idempotency_key=body.idempotency_key,
    )
    uow.commit()
    # Deferred after the commit: the worker must find the row. If this process dies in
    # between, the periodic sweep defers it.
    c.jobs.defer_notification(row.id)
    return row
