"""NotificationSender over Apprise: one Apprise URL per channel, from ``NotifySettings``.

A channel's template (``email_url``, ``slack_url``, ``push_url``, ``webhook_url``) has
``{recipient}`` replaced by the percent-encoded recipient. The webhook channel without a
template takes the recipient itself as the target (a "raw webhook recipient"), restricted to
Apprise's plain HTTP schemes (``json``, ``form``, ``xml`` and their TLS variants) and to the
hosts in ``webhook_hosts``; with that list empty, raw webhook recipients are refused, so an
API caller cannot make the lab post to its database port or a cloud metadata service.
Redirects are not followed for them, since a redirect could leave the allowed hosts. For a
plain local SMTP server without TLS or login the email template reads, for example::

    mailto://127.0.0.1:8025?from=kittylab@lab.example&to={recipient}&mode=insecure

Titles and bodies are plain text, and much of them is untrusted: a CAD prompt, a device's
name, a printer's error text. They are handed to Apprise as ``NotifyFormat.TEXT``, so
Apprise escapes them for whatever format a target renders: HTML-escaped for email (which
Apprise sends as HTML by default, and so would pass a ``<a href=…>`` in a prompt on as a
live link), CommonMark- or Slack-escaped for Markdown targets. A ``format=`` parameter in
the lab's URL only chooses the format the text is escaped into; it cannot make the text
markup. Without a source format Apprise would pass the text through untouched.

Target URLs carry credentials, so they are never logged or put into an error; errors are
built from Apprise's own privacy-masked log lines with every URL secret scrubbed out.

Errors of configuration or recipient (no target for the channel, an email recipient that is
not exactly one valid address, a refused raw webhook recipient, a target Apprise cannot use)
are raised as permanent ``DeliveryFailed``: no retry could succeed. A failed or timed-out
send is not permanent.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, unquote, urlsplit

import apprise

from kittylab.config import NotifySettings
from kittylab.domain.enums import NotificationChannel
from kittylab.domain.notifications import (
    TEMPLATE_SETTING,
    WEBHOOK_SCHEMES,
    email_recipient_problem,
    webhook_host_allowed,
    webhook_recipient_problem,
)
from kittylab.domain.sanitize import REDACTED, sanitize_text
from kittylab.records.ports import DeliveryFailed

__all__ = ["WEBHOOK_SCHEMES", "AppriseSender"]

logger = logging.getLogger(__name__)

_SHORTEST_SECRET = 4


class AppriseSender:
    """Deliver through Apprise. Each ``send`` builds a fresh Apprise object, so concurrent
    sends from worker threads share no state; each is bounded by ``send_timeout_seconds``
    (socket connect and read timeouts, and Apprise's own deadline for the whole call)."""

    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings

    def send(self, channel: NotificationChannel, recipient: str, title: str, body: str) -> None:
        """Deliver one message or raise ``DeliveryFailed`` with a loggable reason,
        ``permanent`` for an error of configuration or recipient."""
        url = self.target_url(channel, recipient)
        timeout = self._settings.send_timeout_seconds
        asset = apprise.AppriseAsset(
            secure_logging=True, storage_mode="memory", service_timeout=timeout
        )
        try:
            service = apprise.Apprise.instantiate(url, asset=asset)
        except Exception as exc:  # a plugin constructor may raise anything on odd input
            raise DeliveryFailed(
                f"the {channel.value} target is not a usable Apprise URL ({type(exc).__name__})",
                permanent=True,
            ) from exc
        if service is None:
            raise DeliveryFailed(
                f"the {channel.value} target is not a usable Apprise URL", permanent=True
            )
        if self._is_raw_webhook(channel):
            # Apprise's own parse decides where the request goes; check that, not only ours.
            if not webhook_host_allowed(
                str(getattr(service, "host", "") or ""), self._settings.webhook_hosts
            ):
                raise DeliveryFailed(
                    "the webhook recipient's host is not in KITTYLAB_NOTIFY__WEBHOOK_HOSTS",
                    permanent=True,
                )
            service.redirects = False
        # The plugins read these per request; the defaults (4 s, 15 s for SMTP) ignore ours.
        service.socket_connect_timeout = timeout
        service.socket_read_timeout = timeout
        batch = apprise.Apprise(asset=asset)
        batch.add(service)
        try:
            result = batch.notify(
                body=body, title=title, body_format=apprise.NotifyFormat.TEXT, timeout=timeout
            )
        except Exception as exc:  # Apprise reports failures in its result; this is a bug
            raise DeliveryFailed(f"{channel.value} delivery raised {type(exc).__name__}") from exc
        if not result:
            reason = _scrub(_last_warning(result), url)
            raise DeliveryFailed(f"{channel.value} delivery failed: {reason}")
        logger.debug("apprise accepted the message", extra={"channel": channel.value})

    def target_url(self, channel: NotificationChannel, recipient: str) -> str:
        """The Apprise URL for one message. The result holds secrets: do not log it.
        Raises a permanent ``DeliveryFailed`` when the channel has no target or the
        recipient does not fit it."""
        setting = TEMPLATE_SETTING[channel]
        template = getattr(self._settings, setting)
        if template is not None:
            if channel is NotificationChannel.EMAIL and (
                problem := email_recipient_problem(recipient)
            ):
                raise DeliveryFailed(f"the email recipient {problem}", permanent=True)
            # Percent-encoding keeps a recipient inside its slot: it cannot end the path or
            # add query parameters (say ``&bcc=``) to the operator's template.
            return str(template.get_secret_value()).replace(
                "{recipient}", quote(recipient, safe="@")
            )
        if self._is_raw_webhook(channel):
            problem = webhook_recipient_problem(recipient, self._settings.webhook_hosts)
            if problem is not None:
                raise DeliveryFailed(f"a webhook recipient {problem}", permanent=True)
            return recipient
        raise DeliveryFailed(
            f"no {channel.value} target configured (KITTYLAB_NOTIFY__{setting.upper()})",
            permanent=True,
        )

    def _is_raw_webhook(self, channel: NotificationChannel) -> bool:
        return channel is NotificationChannel.WEBHOOK and self._settings.webhook_url is None


def _last_warning(result: apprise.AppriseResult) -> str:
    messages = [str(entry.message) for entry in result.logs()]
    return messages[-1] if messages else f"Apprise reported {result.status.name.lower()}"


def _scrub(text: str, url: str) -> str:
    """Remove every credential-like part of ``url`` from ``text``: user, password, path
    segments, query values and fragment. Only scheme, host and port may remain."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "details withheld: the target URL could not be parsed"
    pieces = [parts.username, parts.password, parts.fragment]
    pieces += parts.path.split("/")
    pieces += [pair.partition("=")[2] for pair in parts.query.split("&")]
    clean = text
    for piece in sorted({unquote(p) for p in pieces if p}, key=len, reverse=True):
        if len(piece) >= _SHORTEST_SECRET:
            clean = clean.replace(piece, REDACTED)
    return sanitize_text(clean, 300)
