"""Durable notifications: record one, deliver it with one attempt in flight at a time,
retry with exponential backoff, give up after the policy's last attempt.

The row in ``notifications`` is the source of truth; jobs only say "look at this row now".
``deliver`` locks the row for the whole attempt and acts only on a ``queued`` row whose next
attempt is due, so a duplicate or late job never sends twice. A message can go out twice
only if the target took it but the attempt still counted as failed (the database was lost
before the commit, or the target answered just after the send timeout).

Callers enqueue inside their unit of work and defer the delivery job after it commits
(``JobQueue.defer_notification``); a row whose job never got deferred is found by
``due_for_delivery``, which the periodic sweep runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import DateTime, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Notification
from kittylab.config import NotifySettings
from kittylab.domain.enums import NotificationChannel, NotificationStatus
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.notifications import DeliveryState, RetryPolicy, record_attempt
from kittylab.domain.sanitize import sanitize_payload, sanitize_text
from kittylab.services.ports import DeliveryFailed, NotificationSender

logger = logging.getLogger(__name__)

NOTIFICATIONS_TOTAL = Counter(
    "kittylab_notifications_total",
    "Notification delivery attempts by outcome.",
    ["outcome"],
)

_RECIPIENT_MAX = 512  # the column's length


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    """The attempt failed; another is due after ``retry_in``."""
    FAILED = "failed"
    """The attempt failed and it was the last one the policy allows."""
    NOT_DUE = "not_due"
    """Nothing was sent: the next attempt is ``retry_in`` away."""
    SKIPPED = "skipped"
    """Nothing was sent: the row is gone, no longer queued, or another worker holds it."""


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


def retry_policy(settings: NotifySettings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay=timedelta(seconds=settings.base_delay_seconds),
        max_delay=timedelta(seconds=settings.max_delay_seconds),
    )


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
) -> Notification:
    """Record a queued notification with a sanitized payload and return it.

    With an ``idempotency_key`` already used, the existing row is returned unchanged
    (whatever its status), so a retried request cannot notify twice. Nothing is sent here.
    """
    recipient = recipient.strip()
    if not recipient:
        raise ValidationFailed("recipient", "must not be empty")
    if len(recipient) > _RECIPIENT_MAX:
        raise ValidationFailed("recipient", f"must be at most {_RECIPIENT_MAX} characters")
    if not title.strip():
        raise ValidationFailed("title", "must not be empty")
    values = {
        "channel": channel,
        "recipient": recipient,
        "payload": sanitize_payload({"title": title, "body": body}),
        "related_job_id": related_job_id,
        "related_safety_event_id": related_safety_event_id,
        "related_decision_id": related_decision_id,
    }
    if idempotency_key is None:
        row = Notification(**values)
        session.add(row)
        session.flush()
        return row
    # ON CONFLICT rather than look-then-insert: two concurrent requests with one key must
    # end with one row, and the loser must not abort its whole transaction.
    session.execute(
        insert(Notification)
        .values(**values, idempotency_key=idempotency_key)
        .on_conflict_do_nothing(index_elements=[Notification.idempotency_key])
    )
    return session.scalars(
        select(Notification).where(Notification.idempotency_key == idempotency_key)
    ).one()


def deliver(
    database: Database,
    sender: NotificationSender,
    notification_id: UUID,
    *,
    now: datetime,
    policy: RetryPolicy,
) -> DeliveryResult:
    """Make one delivery attempt for a queued, due notification, in one transaction.

    The row stays locked (``FOR UPDATE SKIP LOCKED``) while the sender runs, so two
    workers cannot attempt the same notification at once; the second one skips. The
    attempt is folded in with ``record_attempt`` and stored as ``metadata["delivery"]``.
    ``now`` must be timezone-aware. Errors other than ``DeliveryFailed`` propagate and
    roll back: the attempt is not counted and the sweep tries again later.
    """
    with database.unit_of_work() as session:
        row = session.scalars(
            select(Notification)
            .where(Notification.id == notification_id)
            .with_for_update(skip_locked=True)
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
        error = _attempt(sender, row)
        outcome = record_attempt(row.status, state, policy, now, error)
        row.status = outcome.status
        # A new dict, not an in-place edit: JSONB columns are not mutation-tracked.
        row.metadata_ = {**row.metadata_, "delivery": outcome.state.to_metadata()}
        if outcome.status is NotificationStatus.SENT:
            row.sent_at = now
        result = _result(row, outcome.state, now)
    NOTIFICATIONS_TOTAL.labels(outcome=result.outcome.value).inc()
    log = logger.warning if error else logger.info
    log(
        "notification %s: %s",
        result.outcome.value,
        notification_id,
        extra={
            "notification_id": str(notification_id),
            "channel": row.channel.value,
            "attempts": result.attempts,
            "error": error,
        },
    )
    return result


def due_for_delivery(session: Session, now: datetime, limit: int) -> list[UUID]:
    """Ids of queued notifications whose next attempt is unset or not after ``now``,
    oldest first, at most ``limit``."""
    next_attempt = Notification.metadata_[("delivery", "next_attempt_at")].astext.cast(
        DateTime(timezone=True)
    )
    return list(
        session.scalars(
            select(Notification.id)
            .where(Notification.status == NotificationStatus.QUEUED)
            .where(or_(next_attempt.is_(None), next_attempt <= now))
            .order_by(Notification.id)
            .limit(limit)
        )
    )


def _attempt(sender: NotificationSender, row: Notification) -> str | None:
    """Send once; return the sanitized error, or None when the sender accepted it."""
    try:
        sender.send(
            row.channel,
            row.recipient,
            str(row.payload.get("title", "")),
            str(row.payload.get("body", "")),
        )
    except DeliveryFailed as exc:
        return sanitize_text(str(exc), 300) or type(exc).__name__
    return None


def _result(row: Notification, state: DeliveryState, now: datetime) -> DeliveryResult:
    if row.status is NotificationStatus.SENT:
        return DeliveryResult(row.id, DeliveryOutcome.SENT, attempts=state.attempts)
    if row.status is NotificationStatus.FAILED:
        return DeliveryResult(row.id, DeliveryOutcome.FAILED, attempts=state.attempts)
    retry_in = (state.next_attempt_at - now) if state.next_attempt_at else timedelta(0)
    return DeliveryResult(row.id, DeliveryOutcome.RETRY, retry_in=retry_in, attempts=state.attempts)
