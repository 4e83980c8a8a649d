"""``/api/notifications``: the outbox of messages to people.

A recipient may carry credentials (a webhook URL with a user and password, a token in its
path or a ``?token=``), so the API shows it masked (``mask_recipient``); the stored value
stays intact for delivery. An idempotency key is scoped to the caller who sent it."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit, urlunsplit
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
from kittylab.domain.sanitize import REDACTED, is_secret_name
from kittylab.people import invites
from kittylab.records import notifications

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


# Query keys whose values are masked, on top of the project's secret names: short forms
# that webhook services use (``key``, ``sig``, ``auth``) and Apprise header parameters
# (``+Authorization=…``).
_SECRET_QUERY_KEY = re.compile(r"key|auth|sig|pwd|^\+", re.IGNORECASE)


def mask_recipient(recipient: str) -> str:
    """``recipient`` as it may be shown: for a URL, scheme, host, port, the first path
    segment and the query keys stay; any userinfo, every later path segment, the values of
    secret-looking query keys and a fragment become ``[redacted]``. Anything that is not a
    URL is returned as is."""
    if "://" not in recipient:
        return recipient
    try:
        parts = urlsplit(recipient)
    except ValueError:  # unparseable: show nothing that might be a secret
        return REDACTED
    # The host is after the last "@", as Apprise and urllib both read it.
    _, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{REDACTED}@{hostport}" if at else hostport
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, _mask_path(parts.path), query, fragment))


def _mask_path(path: str) -> str:
    # Webhook services put their token in the path (/hooks/<token>, /services/T/B/<token>);
    # the first segment rarely is one and tells endpoints apart.
    first, *rest = path.split("/")[1:] or [""]
    if not rest:
        return path
    masked = [REDACTED if segment else "" for segment in rest]
    return "/".join(["", first, *masked])


def _mask_pair(pair: str) -> str:
    # Raw text, not parse_qsl: decoding would turn Apprise's "+Header" into " Header".
    key, equals, _ = pair.partition("=")
    name = unquote(key)
    if equals and (is_secret_name(name) or _SECRET_QUERY_KEY.search(name)):
        return f"{key}={REDACTED}"
    return pair


def _out(row: Notification) -> NotificationOut:
    """``row`` as the API shows it: the recipient masked, and the payload too when it holds
    a secret meant for the recipient alone (an admin's invite carries an enrolment link)."""
    out = NotificationOut.model_validate(row)
    update: dict[str, Any] = {"recipient": mask_recipient(out.recipient)}
    if (row.metadata_ or {}).get(invites.SENSITIVE):
        update["payload"] = {key: REDACTED for key in out.payload}
    return out.model_copy(update=update)


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
    return paginate(uow, stmt, Notification.id, cursor, limit, _out)


@router.get("/{notification_id}", response_model=NotificationOut)
def get_notification(notification_id: UUID, _: SafetyCaller, uow: UnitOfWork) -> NotificationOut:
    row = uow.get(Notification, notification_id)
    if row is None:
        raise NotFound("notification", notification_id)
    return _out(row)


@router.post("", response_model=NotificationOut, status_code=status.HTTP_202_ACCEPTED)
def send_notification(
    body: NotificationCreate,
    caller: SafetyCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> NotificationOut:
    """Queue a message (for instance, to test a channel). Delivery happens in the
    background with retries; poll this notification for its outcome. Refused (422) when
    the channel has no target configured or the recipient cannot be delivered to; repeating
    a request with the same ``idempotencyKey`` returns the first notification, and reusing
    the key for a different message is a 409. Accepted once recorded: its delivery job is
    deferred when the request commits, or by the periodic sweep."""
    row = notifications.send(
        uow,
        c.jobs,
        channel=body.channel,
        recipient=body.recipient,
        title=body.title,
        body=body.body,
        idempotency_key=body.idempotency_key,
        requested_by=caller.user_id,
        settings=c.settings.notify,
    )
    return _out(row)
