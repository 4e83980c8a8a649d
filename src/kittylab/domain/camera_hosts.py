"""Which URLs a camera snapshot may be fetched from: the lab's declared cameras only (issue 13).

A snapshot URL that arrives from outside (a detector's monitor event) names a host KittyLab
will connect to from inside the lab network. Fetching any URL would let whoever can publish
one make the server reach its own admin interfaces, the cloud metadata address or a
printer's API, and keep the answer as "evidence". So a URL is fetched only when its origin
(scheme, host and port) is one of the lab's declared cameras' (their ``snapshot_url``); and
a redirect may not leave that origin (``adapters/detectors/snapshots.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an absolute http(s) URL, the host lower-cased and the
    port made explicit; ``None`` for anything else (a malformed URL included)."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        return None
    return (scheme, host, port)


def declared_origins(camera_urls: Iterable[str]) -> frozenset[Origin]:
    """The origins of the lab's declared camera snapshot URLs (unreadable ones dropped)."""
    return frozenset(o for o in (origin(u) for u in camera_urls) if o is not None)


def is_declared(url: str, declared: frozenset[Origin]) -> bool:
    """Whether ``url`` is on one of the ``declared`` camera origins."""
    found = origin(url)
    return found is not None and found in declared
