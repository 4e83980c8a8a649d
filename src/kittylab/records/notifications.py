"""Durable notifications: record one, deliver it with one attempt in flight at a time,
retry with exponential backoff, give up after the policy's last attempt.

The row in ``notifications`` is the source of truth; jobs only say "look at this row now".
``deliver`` never holds a database connection while the sender talks to the network:

1. claim, in a short transaction: a ``queued`` row whose next attempt is due and that no
   live claim covers gets ``metadata["delivery"]["claimed_until"]`` (now + the lease) and a
   claim token;
2. send, outside any transaction;
3. record the outcome in a second short transaction, which also drops the claim.

A duplicate or late job finds the claim (or a final status) and sends nothing, so two
workers never send one message concurrently. A claim whose worker died expires after the
lease (``claim_lease``: twice the send timeout plus 30 s, so a live worker always records
first) and can then be taken again; a job that found the claim asks to look again then.
A message can go out twice only if the target took it but the outcome was never recorded
(the worker or database was lost between send and record), or the target answered just
after the send timeout.

The backoff runs from when an attempt ended, read from the clock after the send, so a
slow send does not eat into the wait before the next one. A permanent ``DeliveryFailed``
(see ``kittylab.ports``) fails the notification on its first attempt.

Callers enqueue inside their unit of work and register the delivery job on it
(``uow.after_commit(jobs.defer_notification, row.id)``; ``send`` does both); a row whose
job never got deferred, or whose claim expired, is found by ``due_for_delivery``, which
the periodic sweep runs.

A title and a body are plain text, whoever wrote the parts quoted in them (a CAD prompt, a
device's name, a printer's error): no caller escapes or formats them, and a sender must
deliver them so that no target renders them as markup (``AppriseSender`` hands them to
Apprise as text, which escapes them for each target's format).

An idempotency key belongs to whoever requested the notification (``requested_by``; None
for the lab's own notifications, which share one scope): the column stores it scoped to
that requester, so two users' keys never meet, and one requester reusing a key for a
different message is refused rather than answered with the first message.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from prometheus_client import Counter
from sqlalchemy import DateTime, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Notification
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import NotifySettings
from kittylab.domain.clock import utcnow
from kittylab.domain.enums import NotificationChannel, NotificationStatus
from kittylab.domain.errors import Conflict, ValidationFailed
from kittylab.domain.notifications import (
    TEMPLATE_SETTING,
    DeliveryState,
    RetryPolicy,
    email_recipient_problem,
    record_attempt,
    webhook_recipient_problem,
)
from kittylab.domain.sanitize import sanitize_payload, sanitize_text
from kittylab.ports import JobQueue
from kittylab.records.ports import DeliveryFailed, NotificationSender

logger = logging.getLogger(__name__)

NOTIFICATIONS_TOTAL = Counter(
    "kittylab_notifications_total",
    "Notification delivery attempts by outcome.",
    ["outcome"],
)
# The outcomes counted, at 0 from the start, so the first failure is a rise an alert sees.
for _outcome in ("sent", "retry", "failed"):
    NOTIFICATIONS_TOTAL.labels(outcome=_outcome)

_RECIPIENT_MAX = 512  # the column's length
_CLAIMED_UNTIL = "claimed_until"
_CLAIM = "claim"


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    """The attempt failed; another is due after ``retry_in``."""
    FAILED = "failed"
    """The attempt failed and it was the last one the policy allows."""
    NOT_DUE = "not_due"
    """Nothing was sent: the next attempt is ``retry_in`` away."""
    SKIPPED = "skipped"
    """Nothing was recorded: the row is gone, no longer queued, or another worker's claim
    covers it (then ``retry_in`` is when that claim runs out)."""


@dataclass(frozen=True)
class DeliveryResult:
    notification_id: UUID
    outcome: DeliveryOutcome
    retry_in: timedelta | None = None
    attempts: int = 0

    @property
    def should_retry(self) -> bool:
        """True when a job must look at this notification again after ``retry_in``."""
        return self.retry_in is not None


@dataclass(frozen=True)
class _Failure:
    """A failed send: its sanitized reason, and whether retrying could help."""

    error: str
    permanent: bool = False


@dataclass(frozen=True)
class _Claimed:
    """What the send needs, copied out of the row so no session outlives the claim."""

    channel: NotificationChannel
    recipient: str
    title: str
    body: str


def retry_policy(settings: NotifySettings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay=timedelta(seconds=settings.base_delay_seconds),
        max_delay=timedelta(seconds=settings.max_delay_seconds),
    )


def claim_lease(settings: NotifySettings) -> timedelta:
    """How long a claimed delivery belongs to its worker: twice the send timeout plus 30 s,
    so a live worker has always recorded its outcome before the claim can be taken again."""
    return timedelta(seconds=2 * settings.send_timeout_seconds + 30)


DEFAULT_LEASE = claim_lease(NotifySettings())


def enqueue(
    session: Session,
    *,
    channel: NotificationChannel,
    recipient: str,
    title: str,
    body: str,
    related_job_id: UUID | None = None,
    related_safety_event_id: UUID | None = None,
    related_decision_id: UUID | None = None,
    idempotency_key: str | None = None,
    requested_by: UUID | None = None,
    settings: NotifySettings | None = None,
) -> Notification:
    """Record a queued notification with a sanitized payload and return it.

    ``requested_by`` is the user who asked for it (None for the lab's own notifications).

    With ``settings``, a notification the sender is bound to refuse is refused here instead
    (``ValidationFailed``): on ``channel`` when the settings configure no target for it, on
    ``recipient`` when it is an email recipient that is not exactly one valid address, or a
    raw webhook recipient whose scheme or host the settings do not allow. Without them the
    recipient is only checked for shape.

    With an ``idempotency_key`` that ``requested_by`` already used for the same channel,
    recipient, title, body and related records, the existing row is returned unchanged
    (whatever its status), so a retried request cannot notify twice; used for anything else,
    ``Conflict`` on ``idempotencyKey``. Keys of different requesters never match. Nothing is
    sent here.
    """
    recipient = recipient.strip()
    if not recipient:
        raise ValidationFailed("recipient", "must not be empty")
    if len(recipient) > _RECIPIENT_MAX:
        raise ValidationFailed("recipient", f"must be at most {_RECIPIENT_MAX} characters")
    if settings is not None:
        _check_target(channel, recipient, settings)
    if not title.strip():
        raise ValidationFailed("title", "must not be empty")
    values: dict[str, Any] = {
        "channel": channel,
        "recipient": recipient,
        "payload": sanitize_payload({"title": title, "body": body}),
        "related_job_id": related_job_id,
        "related_safety_event_id": related_safety_event_id,
        "related_decision_id": related_decision_id,
        "requested_by": requested_by,
    }
    if idempotency_key is None:
        row = Notification(**values)
        session.add(row)
        session.flush()
        return row
    stored_key = _scoped_key(idempotency_key, requested_by)
    # ON CONFLICT rather than look-then-insert: two concurrent requests with one key must
    # end with one row, and the loser must not abort its whole transaction.
    session.execute(
        insert(Notification)
        .values(**values, idempotency_key=stored_key)
        .on_conflict_do_nothing(index_elements=[Notification.idempotency_key])
    )
    row = session.scalars(
        select(Notification).where(Notification.idempotency_key == stored_key)
    ).one()
    if any(getattr(row, name) != value for name, value in values.items()):
        raise Conflict(
            "this idempotency key was already used for a different notification",
            field="idempotencyKey",
        )
    return row


def send(
    uow: UnitOfWork,
    jobs: JobQueue,
    *,
    channel: NotificationChannel,
    recipient: str,
    title: str,
    body: str,
    idempotency_key: str | None = None,
    requested_by: UUID | None = None,
    settings: NotifySettings | None = None,
) -> Notification:
    """``enqueue`` a message someone asked for, its delivery job deferred once ``uow``
    commits (the worker must find the row). If deferring fails, or the process dies
    first, ``sweep_notifications`` defers it: the row is committed, and failing the request
    instead would only make the client retry and queue the message twice."""
    row = enqueue(
        uow,
        channel=channel,
        recipient=recipient,
        title=title,
        body=body,
        idempotency_key=idempotency_key,
        requested_by=requested_by,
        settings=settings,
    )
    uow.after_commit(jobs.defer_notification, row.id)
    return row


def _check_target(channel: NotificationChannel, recipient: str, settings: NotifySettings) -> None:
    """Refuse what the sender would refuse for good under ``settings``."""
    if channel is NotificationChannel.WEBHOOK and settings.webhook_url is None:
        # No template: the recipient is the target, and the settings say which it may be.
        if problem := webhook_recipient_problem(recipient, settings.webhook_hosts):
            raise ValidationFailed("recipient", problem)
        return
    setting = TEMPLATE_SETTING[channel]
    if getattr(settings, setting) is None:
        raise ValidationFailed(
            "channel",
            f"no {channel.value} target is configured (set KITTYLAB_NOTIFY__{setting.upper()})",
        )
    if channel is NotificationChannel.EMAIL and (problem := email_recipient_problem(recipient)):
        raise ValidationFailed("recipient", problem)


def _scoped_key(idempotency_key: str, requested_by: UUID | None) -> str:
    """The stored form of a key: as given for the lab's own notifications; for a user's,
    their id and a digest of the key, so it fits the column whatever the key's length and
    matches no other user's key."""
    if requested_by is None:
        return idempotency_key
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"{requested_by}:{digest}"


def deliver(
    database: Database,
    sender: NotificationSender,
    notification_id: UUID,
    *,
    policy: RetryPolicy,
    clock: Callable[[], datetime] = utcnow,
    lease: timedelta = DEFAULT_LEASE,
) -> DeliveryResult:
    """Make one delivery attempt for a queued, due, unclaimed notification.

    Claims the row for ``lease`` in one short transaction, sends with no transaction open,
    and records the attempt (folded in with ``record_attempt``, stored as
    ``metadata["delivery"]``) in a second one; see the module docstring. ``clock`` (which
    must return timezone-aware times) is read for the claim and again after the send: the
    second reading stamps ``sent_at`` and starts the backoff. Every failure of the sender
    counts as an attempt: ``DeliveryFailed`` with its sanitized message (the last attempt
    when ``permanent``), any other exception with just its type name (its text may hold a
    target's secrets). A database error propagates; a claim it leaves behind expires after
    ``lease``.
    """
    token = uuid4().hex
    claimed = _claim(database, notification_id, clock(), lease, token)
    if isinstance(claimed, DeliveryResult):
        return claimed
    failure = _attempt(sender, claimed, notification_id)
    result = _record(database, notification_id, token, clock(), policy, failure)
    if result.outcome is DeliveryOutcome.SKIPPED:
        return result
    NOTIFICATIONS_TOTAL.labels(outcome=result.outcome.value).inc()
    log = logger.warning if failure else logger.info
    log(
        "notification %s: %s",
        result.outcome.value,
        notification_id,
        extra={
            "notification_id": str(notification_id),
            "channel": claimed.channel.value,
            "attempts": result.attempts,
            "error": failure.error if failure else None,
            "permanent": failure.permanent if failure else None,
        },
    )
    return result


def due_for_delivery(session: Session, now: datetime, limit: int) -> list[UUID]:
    """Ids of queued notifications whose next attempt is unset or not after ``now`` and
    that no unexpired claim covers, oldest first, at most ``limit``."""
    next_attempt = _delivery_time("next_attempt_at")
    claimed_until = _delivery_time(_CLAIMED_UNTIL)
    return list(
        session.scalars(
            select(Notification.id)
            .where(Notification.status == NotificationStatus.QUEUED)
            .where(or_(next_attempt.is_(None), next_attempt <= now))
            .where(or_(claimed_until.is_(None), claimed_until <= now))
            .order_by(Notification.id)
            .limit(limit)
        )
    )


def _delivery_time(key: str) -> Any:
    return Notification.metadata_[("delivery", key)].astext.cast(DateTime(timezone=True))


def _claim(
    database: Database, notification_id: UUID, now: datetime, lease: timedelta, token: str
) -> _Claimed | DeliveryResult:
    """Take the row for this attempt, or say why not."""
    with database.unit_of_work() as session:
        # A plain row lock: every transaction that takes it is short, so waiting is
        # brief, and a claim decided under it is never decided twice.
        row = session.scalars(
            select(Notification).where(Notification.id == notification_id).with_for_update()
        ).one_or_none()
        if row is None or row.status is not NotificationStatus.QUEUED:
            return DeliveryResult(notification_id, DeliveryOutcome.SKIPPED)
        state = DeliveryState.from_metadata(row.metadata_)
        if state.next_attempt_at is not None and state.next_attempt_at > now:
            return DeliveryResult(
                notification_id,
                DeliveryOutcome.NOT_DUE,
                retry_in=state.next_attempt_at - now,
                attempts=state.attempts,
            )
        delivery: dict[str, Any] = dict(row.metadata_.get("delivery") or {})
        claimed_until = _claimed_until(delivery)
        if claimed_until is not None and claimed_until > now:
            logger.debug(
                "notification %s is claimed by another worker",
                notification_id,
                extra={"notification_id": str(notification_id)},
            )
            # Look again when the claim runs out, in case its worker died holding it.
            return DeliveryResult(
                notification_id,
                DeliveryOutcome.SKIPPED,
                retry_in=claimed_until - now,
                attempts=state.attempts,
            )
        delivery[_CLAIMED_UNTIL] = (now + lease).isoformat()
        delivery[_CLAIM] = token
        # A new dict, not an in-place edit: JSONB columns are not mutation-tracked.
        row.metadata_ = {**row.metadata_, "delivery": delivery}
        return _Claimed(
            channel=row.channel,
            recipient=row.recipient,
            title=str(row.payload.get("title", "")),
            body=str(row.payload.get("body", "")),
        )


def _record(
    database: Database,
    notification_id: UUID,
    token: str,
    now: datetime,
    policy: RetryPolicy,
    failure: _Failure | None,
) -> DeliveryResult:
    """Fold the attempt, which ended at ``now``, into the row and drop the claim.

    Normally the claim is still ours. If it is not (this worker stalled past the lease and
    another took over), a failure is dropped, since the newer attempt speaks for the row,
    but a success is still recorded so the message is not sent yet again.
    """
    with database.unit_of_work() as session:
        row = session.scalars(
            select(Notification).where(Notification.id == notification_id).with_for_update()
        ).one_or_none()
        if row is None or row.status is not NotificationStatus.QUEUED:
            return _claim_lost(notification_id, failure, row)
        ours = (row.metadata_.get("delivery") or {}).get(_CLAIM) == token
        if not ours and failure is not None:
            return _claim_lost(notification_id, failure, row)
        state = DeliveryState.from_metadata(row.metadata_)
        outcome = record_attempt(
            row.status,
            state,
            policy,
            now,
            failure.error if failure else None,
            permanent=failure is not None and failure.permanent,
        )
        row.status = outcome.status
        row.metadata_ = {**row.metadata_, "delivery": outcome.state.to_metadata()}
        if outcome.status is NotificationStatus.SENT:
            row.sent_at = now
        return _result(row, outcome.state, now)


def _claim_lost(
    notification_id: UUID, failure: _Failure | None, row: Notification | None
) -> DeliveryResult:
    logger.warning(
        "notification %s: the claim was lost before the outcome was recorded",
        notification_id,
        extra={
            "notification_id": str(notification_id),
            "sent": failure is None,
            "status": row.status.value if row is not None else None,
        },
    )
    return DeliveryResult(notification_id, DeliveryOutcome.SKIPPED)


def _claimed_until(delivery: dict[str, Any]) -> datetime | None:
    raw = delivery.get(_CLAIMED_UNTIL)
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:  # a hand-edited row: treat as unclaimed rather than stuck
        return None


def _attempt(
    sender: NotificationSender, claimed: _Claimed, notification_id: UUID
) -> _Failure | None:
    """Send once; return the failure, or None when the sender accepted it."""
    try:
        sender.send(claimed.channel, claimed.recipient, claimed.title, claimed.body)
    except DeliveryFailed as exc:
        error = sanitize_text(str(exc), 300) or type(exc).__name__
        return _Failure(error, permanent=exc.permanent)
    except Exception as exc:  # a sender bug must still count, or the row retries forever
        frame = traceback.extract_tb(exc.__traceback__)[-1:]
        logger.error(
            "notification %s: the sender raised %s",
            notification_id,
            type(exc).__name__,
            extra={
                "notification_id": str(notification_id),
                # Where, not what: the message may quote the target URL and its secrets.
                "at": f"{frame[0].filename}:{frame[0].lineno} in {frame[0].name}"
                if frame
                else None,
            },
        )
        return _Failure(type(exc).__name__)
    return None


def _result(row: Notification, state: DeliveryState, now: datetime) -> DeliveryResult:
    if row.status is NotificationStatus.SENT:
        return DeliveryResult(row.id, DeliveryOutcome.SENT, attempts=state.attempts)
    if row.status is NotificationStatus.FAILED:
        return DeliveryResult(row.id, DeliveryOutcome.FAILED, attempts=state.attempts)
    retry_in = (state.next_attempt_at - now) if state.next_attempt_at else timedelta(0)
    return DeliveryResult(row.id, DeliveryOutcome.RETRY, retry_in=retry_in, attempts=state.attempts)
