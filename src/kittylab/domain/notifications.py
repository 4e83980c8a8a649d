"""Notification delivery state: attempts, exponential backoff, when to give up.

The retry state lives in the notification's metadata as ``delivery`` so an operator can see
why a message is late without reading logs. A permanent error (a target that is not
configured, a recipient no target accepts) fails the notification on its first attempt:
retrying it would only delay the failure."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from kittylab.domain.enums import NotificationChannel, NotificationStatus
from kittylab.domain.state_machines import NOTIFICATION_TRANSITIONS, transition


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: timedelta = timedelta(seconds=10)
    max_delay: timedelta = timedelta(minutes=30)

    def delay_after(self, attempts: int) -> timedelta:
        """Delay before attempt ``attempts + 1``: base × 2^(attempts-1), capped at
        ``max_delay``. Defined for every attempt count: the exponent stops growing once the
        cap is certain, so no attempt count overflows."""
        exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
        seconds = self.base_delay.total_seconds() * 2.0**exponent
        return timedelta(seconds=min(seconds, self.max_delay.total_seconds()))


# Beyond 2**64 the cap has long applied (at a one-microsecond base that is over half a
# million years); the uncapped power overflows timedelta from attempt 44 at a 10 s base.
_MAX_EXPONENT = 64


@dataclass
class DeliveryState:
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> DeliveryState:
        raw = metadata.get("delivery") or {}
        nxt = raw.get("next_attempt_at")
        return cls(
            attempts=int(raw.get("attempts", 0)),
            next_attempt_at=datetime.fromisoformat(nxt) if nxt else None,
            last_error=raw.get("last_error"),
            errors=list(raw.get("errors", [])),
        )

    def to_metadata(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "last_error": self.last_error,
            "errors": self.errors[-10:],
        }


@dataclass(frozen=True)
class AttemptOutcome:
    status: NotificationStatus
    state: DeliveryState


def record_attempt(
    status: NotificationStatus,
    state: DeliveryState,
    policy: RetryPolicy,
    now: datetime,
    error: str | None,
    *,
    permanent: bool = False,
) -> AttemptOutcome:
    """Fold one delivery attempt into the state: sent, retry later, or failed for good.

    A failed attempt is the last when the policy allows no more or when the error is
    ``permanent`` (no later attempt could succeed). ``now`` is when the attempt ended: the
    backoff runs from there."""
    attempts = state.attempts + 1
    if error is None:
        new_status = transition(
            "notification", NOTIFICATION_TRANSITIONS, status, NotificationStatus.SENT
        )
        return AttemptOutcome(
            new_status, DeliveryState(attempts, None, state.last_error, state.errors)
        )
    errors = [*state.errors, f"{now.isoformat()} {error}"]
    if permanent or attempts >= policy.max_attempts:
        new_status = transition(
            "notification", NOTIFICATION_TRANSITIONS, status, NotificationStatus.FAILED
        )
        return AttemptOutcome(new_status, DeliveryState(attempts, None, error, errors))
    if status is not NotificationStatus.QUEUED:
        transition("notification", NOTIFICATION_TRANSITIONS, status, NotificationStatus.SENT)
    next_at = now + policy.delay_after(attempts)
    return AttemptOutcome(
        NotificationStatus.QUEUED, DeliveryState(attempts, next_at, error, errors)
    )


# --- Targets and recipients ----------------------------------------------------------------

TEMPLATE_SETTING = {
    NotificationChannel.EMAIL: "email_url",
    NotificationChannel.SLACK: "slack_url",
    NotificationChannel.PUSH: "push_url",
    NotificationChannel.WEBHOOK: "webhook_url",
}
"""The ``NotifySettings`` field holding each channel's Apprise URL template (set through
``KITTYLAB_NOTIFY__<FIELD>``)."""


def email_recipient_problem(recipient: str) -> str | None:
    """Why ``recipient`` is not exactly one valid email address, or None when it is. The
    reason reads after "the recipient". Lists, display names and quoted local parts are
    refused: a mail target splits its "to" on commas, spaces and semicolons, so anything
    looser would let a recipient add further addressees."""
    try:
        validate_email(recipient, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"is not a single valid email address ({exc})"
    return None


# --- Webhook targets ---------------------------------------------------------------------

WEBHOOK_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
"""Schemes a raw webhook recipient may use: a recipient often comes from an API caller,
who must not be able to make the lab send mail or post to arbitrary chat services."""


def webhook_host_allowed(host: str | None, allowed_hosts: Collection[str]) -> bool:
    """Whether ``host`` is one of ``allowed_hosts``: exact names or IP literals compared
    case-insensitively, without IPv6 brackets or a trailing dot; no wildcards."""
    if not host:
        return False
    return _host_key(host) in {_host_key(h) for h in allowed_hosts if h.strip()}


def webhook_recipient_problem(recipient: str, allowed_hosts: Collection[str]) -> str | None:
    """Why ``recipient`` cannot be used as a raw webhook target (an Apprise URL taken as
    is, when no ``webhook_url`` template is configured), or None when it can. The reason
    reads after "the recipient" and names the setting that would change it."""
    try:
        parts = urlsplit(recipient)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return "is not a URL"
    if parts.scheme.lower() not in WEBHOOK_SCHEMES:
        return (
            "must be a json://, form:// or xml:// Apprise URL (or set KITTYLAB_NOTIFY__WEBHOOK_URL)"
        )
    if not allowed_hosts:
        return (
            "is refused: raw webhook recipients need KITTYLAB_NOTIFY__WEBHOOK_HOSTS (a JSON "
            "list of the hosts they may target) or a KITTYLAB_NOTIFY__WEBHOOK_URL template"
        )
    if not webhook_host_allowed(host, allowed_hosts):
        return f"targets host {host or ''!r}, which is not in KITTYLAB_NOTIFY__WEBHOOK_HOSTS"
    return None


def _host_key(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
