"""Telling a person something happened, on every channel the lab has configured.

Email goes to the person's address when email is configured; push, Slack and the lab
webhook take the username as recipient (their URL templates place it). When the lab has
configured no channel at all, the message is still recorded (on ``push``) so the API shows
it — and its delivery fails at once saying no target is configured, rather than the
alert vanishing.

Titles and bodies are plain text (see ``kittylab.records.notifications``): names and
reasons are quoted in them as they are, never as markup.
"""

from __future__ import annotations

import logging
from uuid import UUID

from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Notification, User
from kittylab.config import NotifySettings
from kittylab.domain.enums import NotificationChannel
from kittylab.records import notifications

log = logging.getLogger(__name__)


def notify_person(
    session: Session,
    user_id: UUID,
    title: str,
    body: str,
    settings: NotifySettings,
    *,
    related_job_id: UUID | None = None,
    related_safety_event_id: UUID | None = None,
    idempotency_key: str | None = None,
) -> list[Notification]:
    """Queue the message for ``user_id`` on each configured channel; returns the rows
    (the caller defers their delivery after committing). An inactive or unknown person
    gets nothing."""
    user = session.get(User, user_id)
    if user is None or not user.active:
        return []
    targets: list[tuple[NotificationChannel, str]] = []
    if settings.email_url is not None and user.email:
        targets.append((NotificationChannel.EMAIL, user.email))
    for channel, url in (
        (NotificationChannel.PUSH, settings.push_url),
        (NotificationChannel.SLACK, settings.slack_url),
        (NotificationChannel.WEBHOOK, settings.webhook_url),
    ):
        if url is not None:
            targets.append((channel, user.username))
    if not targets:
        log.warning("no notification channel is configured; %r is recorded only", title)
        targets.append((NotificationChannel.PUSH, user.username))
    return [
        notifications.enqueue(
            session,
            channel=channel,
            recipient=recipient,
            title=title,
            body=body,
            related_job_id=related_job_id,
            related_safety_event_id=related_safety_event_id,
            idempotency_key=f"{idempotency_key}:{channel.value}" if idempotency_key else None,
        )
        for channel, recipient in targets
    ]
