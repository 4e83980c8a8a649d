"""An admin's invite over the API (issue 17): the same one-time enrolment link as
``kittylab users invite NAME`` (``passkeys.issue_invite``), but delivered by email to the
person's own address and never shown to the admin who asked for it.

The link travels only in the notification's body; the notification is marked
``sensitive`` so the notifications API shows its payload redacted, and neither the audit
entries (``invite.issued``, ``invite.sent``) nor any log line hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from kittylab.adapters.db.tables import User
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import Settings
from kittylab.domain.enums import NotificationChannel
from kittylab.domain.errors import Conflict
from kittylab.people import passkeys
from kittylab.ports import JobQueue
from kittylab.records import audit, notifications

SENSITIVE = "sensitive"
"""A notification's metadata key: its payload holds a secret no API shows."""


@dataclass(frozen=True)
class SentInvite:
    user_id: UUID
    notification_id: UUID
    sent_to: str
    """The address, masked."""
    expires_at: datetime


def console_url(settings: Settings, port: int | None = None) -> str:
    """Where people open the console: ``console.public_url``, or the relying-party host
    (``localhost``) at the server's port: passkeys need a host name, and ``localhost`` is
    one browsers trust without TLS."""
    if settings.console.public_url:
        return settings.console.public_url.rstrip("/")
    return f"http://{settings.console.rp_id}:{port or settings.http.port}"


def mask_email(address: str) -> str:
    """``olivia@lab.example`` → ``o…@lab.example``: enough to tell which address, not to
    read it out."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "…"
    return f"{local[:1]}…@{domain}"


def send_invite(
    uow: UnitOfWork,
    jobs: JobQueue,
    user: User,
    *,
    settings: Settings,
    now: datetime,
    actor_id: UUID,
) -> SentInvite:
    """Mint an enrolment link for ``user`` and queue it to their own email address.
    ``Conflict`` on ``email`` when they have none (the server host's
    ``kittylab users invite`` is then the way); ``ValidationFailed`` when the lab has no
    email target configured."""
    if not user.email:
        raise Conflict(
            f"user {user.username} has no email address to send the link to; set their "
            "email, or run `kittylab users invite "
            f"{user.username}` on the server host and hand the link over",
            field="email",
        )
    lifetime = timedelta(minutes=settings.console.invite_minutes)
    issued = passkeys.issue_invite(uow, user, lifetime=lifetime, now=now, actor_id=actor_id)
    link = f"{console_url(settings)}/enrol#{issued.token}"
    row = notifications.send(
        uow,
        jobs,
        channel=NotificationChannel.EMAIL,
        recipient=user.email,
        title="Your KittyLab console sign-in link",
        body=(
            f"Hello {user.username},\n\nopen this link in the browser you will use to sign "
            f"in to the KittyLab console, and enrol a passkey:\n\n{link}\n\n"
            f"It works once, until {issued.expires_at:%Y-%m-%d %H:%M} UTC. If you did not "
            "expect it, do not open it and tell the lab's admin."
        ),
        requested_by=actor_id,
        settings=settings.notify,
    )
    row.metadata_ = {**(row.metadata_ or {}), SENSITIVE: True}
    sent_to = mask_email(user.email)
    audit.append(
        uow,
        action="invite.sent",
        actor_id=actor_id,
        now=now,
        subject_type="console_invite",
        subject_id=issued.invite_id,
        details={
            "user_id": user.id,
            "username": user.username,
            "notification_id": row.id,
            "sent_to": sent_to,
            "expires_at": issued.expires_at,
        },
    )
    return SentInvite(user.id, row.id, sent_to, issued.expires_at)
