"""The network an API request comes from (issue 13), decided once, in ``current_principal``.

A caller outside the lab's trusted networks (``KITTYLAB_HTTP__TRUSTED_NETWORKS``) is
authenticated as usual and marked ``Principal.remote``: the actuation gate
(``domain.actuation``) and the approval workflow refuse it everything but reads, on every
path. On top of that, every write it sends is refused here, before the handler runs,
except the few in ``REMOTE_WRITES`` that change nothing in the lab: a remote request can
read, never lock, unlock, check in, apply a manifest, mint a token or enrol a key. A new
route is refused from outside until it is listed (fail closed).

The client's address is the TCP peer's, or, behind a reverse proxy listed in
``KITTYLAB_HTTP__TRUSTED_PROXIES``, what that proxy wrote in ``X-Forwarded-For``
(``domain.networks.origin``). ``kittylab serve`` turns uvicorn's own proxy-header
handling off, so nothing rewrites the peer before this reads it.
"""

from __future__ import annotations

from fastapi import Request

from kittylab.config import HttpSettings
from kittylab.domain import networks
from kittylab.domain.networks import OutsideTrustedNetworks

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

REMOTE_WRITES: frozenset[tuple[str, str]] = frozenset(
    {
        # A question; the actuation gate refuses whatever the turn would switch.
        ("POST", "/api/query"),
        ("POST", "/console/talk/say"),  # the console's typed turn: /api/query's use case
        ("POST", "/api/conversations"),
        ("DELETE", "/api/conversations/{conversation_id}"),
        # Designing a part actuates nothing; printing it is a print job, refused below.
        ("POST", "/api/cad/generate"),
        ("POST", "/api/cad/jobs/{job_id}/iterate"),
        # Signing out, here or another of one's own sessions, only takes access away.
        ("POST", "/console/sign-out"),
        ("POST", "/console/sessions/{session_id}/revoke"),
    }
)
"""Writes (method, route path) a request from outside the trusted networks may make."""


def is_trusted(request: Request, http: HttpSettings) -> bool:
    """Whether ``request`` comes from the lab's trusted networks."""
    headers = request.headers
    peer = request.client.host if request.client is not None else None
    return networks.trusted(
        peer,
        headers.getlist("x-forwarded-for"),
        forwarding_headers=any(name in headers for name in networks.FORWARDING_HEADERS),
        proxies=http.trusted_proxies,
        networks=http.trusted_networks,
    )


def refuse_remote_write(request: Request) -> None:
    """``OutsideTrustedNetworks`` unless the request only reads or is in ``REMOTE_WRITES``."""
    if request.method in READ_METHODS:
        return
    route = getattr(request.scope.get("route"), "path", request.url.path)
    if (request.method, route) not in REMOTE_WRITES:
        raise OutsideTrustedNetworks(f"{request.method} {route}")
