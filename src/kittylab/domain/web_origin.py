"""Which browser origins may hold a passkey ceremony with this lab (issue 17).

A WebAuthn assertion carries the origin the browser saw, signed by the authenticator. The
server accepts it only from the console's own origins: the exact list configured
(``KITTYLAB_CONSOLE__ORIGINS``), or, when none is, any port of the relying-party host
(or a subdomain of it) over HTTPS, and plain HTTP for ``localhost`` only — the one host
browsers treat as a secure context without TLS.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from kittylab.domain.errors import ValidationFailed


def is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def check_origin(origin: str | None, rp_id: str, configured: Sequence[str] = ()) -> str:
    """``origin`` (the request's ``Origin`` header) when the console may run there;
    otherwise ``ValidationFailed`` on ``origin`` saying where to open the console."""
    if not origin:
        raise ValidationFailed("origin", "the browser sent no Origin; open the console page")
    if configured:
        if origin.rstrip("/") in {o.rstrip("/") for o in configured}:
            return origin
        raise ValidationFailed("origin", f"open the console at {configured[0]}")
    try:
        parts = urlsplit(origin)
        host = (parts.hostname or "").lower()
        _ = parts.port
    except ValueError:
        raise ValidationFailed("origin", "is not an origin") from None
    on_host = host == rp_id or host.endswith("." + rp_id)
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_localhost(host))
    if on_host and secure and not parts.path.strip("/"):
        return origin
    scheme = "http" if is_localhost(rp_id) else "https"
    raise ValidationFailed(
        "origin", f"passkeys here work only at {scheme}://{rp_id}; open the console there"
    )
