"""Outbound HTTP shared by the detector client and the snapshot fetcher: URL checks,
URL redaction for messages, and the TLS context."""

from __future__ import annotations

import ssl
from functools import cache
from urllib.parse import urlsplit

from kittylab.domain.errors import ValidationFailed


def require_http_url(url: str, field: str) -> str:
    """``url`` stripped, when it is an absolute http(s) URL with a host; otherwise
    ``ValidationFailed(field, …)`` (without echoing the URL, which may hold credentials)."""
    candidate = url.strip()
    try:
        parts = urlsplit(candidate)
        has_host = bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 literal or port
        has_host = False
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not has_host:
        raise ValidationFailed(field, "must be an absolute http:// or https:// URL")
    return candidate


def public_url(url: str) -> str:
    """``url`` reduced to scheme, host, port and path, for messages and logs: user info,
    query and fragment often carry credentials (camera passwords, snapshot tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(malformed URL)"
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


@cache
def tls_context() -> ssl.SSLContext:
    """The system trust store (where a lab installs its own CA), built once: building it
    costs ~50 ms, and a fresh httpx client without one loads certifi's bundle each time."""
    return ssl.create_default_context()
