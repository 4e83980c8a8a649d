"""The console's cookie session as a way to authenticate (issue 17), next to bearer tokens.

``current_principal`` (``api/auth.py``) calls ``cookie_principal`` when a request carries no
bearer token: the same ``Principal`` comes out (same roles, same remote rule, same scope
checks), so every API route and the console's own routes apply one set of rules.

Cross-site request forgery: the cookie is ``SameSite=Strict`` and ``HttpOnly`` (and
``Secure`` over HTTPS), and on top of that every write authenticated by the cookie must
carry the session's CSRF token in ``X-CSRF-Token`` (the console's pages hold it); a write
without it is refused with 403 before the handler runs. A tap-in on a wall terminal (issue
18) reaches only the terminal's own actions (``domain.tap_in``). Bearer-token requests are not
affected: a browser never sends those by itself.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from fastapi import Request, Response

from kittylab.api.networks import READ_METHODS
from kittylab.bootstrap import Container
from kittylab.config import ConsoleSettings
from kittylab.domain.errors import PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.domain.tap_in import tap_in_refusal
from kittylab.people import web_sessions
from kittylab.people.passkeys import RelyingParty

SESSION_COOKIE = "kittylab_session"
CSRF_HEADER = "X-CSRF-Token"

LAST_SEEN_RESOLUTION = timedelta(minutes=1)
"""How stale a session's ``last_seen_at`` may get (the idle timeout is hours)."""


class CsrfRefused(PermissionDenied):
    def __init__(self) -> None:
        super().__init__(
            "this change came without the page's CSRF token (X-CSRF-Token); reload the "
            "console page and try again"
        )


def limits(settings: ConsoleSettings) -> web_sessions.SessionLimits:
    return web_sessions.SessionLimits(
        idle=timedelta(seconds=settings.session_idle_seconds),
        absolute=timedelta(seconds=settings.session_absolute_seconds),
        terminal_idle=timedelta(seconds=settings.terminal_tap_seconds),
    )


def relying_party(settings: ConsoleSettings) -> RelyingParty:
    return RelyingParty(settings.rp_id, settings.rp_name, tuple(settings.origins))


def active_session(
    request: Request, c: Container, *, touch: bool = True
) -> web_sessions.ActiveSession | None:
    """The request's console session, or None without a session cookie;
    ``AuthenticationRequired`` for a cookie that no longer works. Resolved once per
    request (``request.state.web_session``). ``touch=False``: a look that is not the
    session's use (its idle clock does not move on)."""
    cached: web_sessions.ActiveSession | None = getattr(request.state, "web_session", None)
    if cached is not None:
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with c.database.unit_of_work() as session:
        active = web_sessions.resolve(
            session,
            token,
            c.clock(),
            limits(c.settings.console),
            LAST_SEEN_RESOLUTION,
            touch=touch,
        )
    request.state.web_session = active
    return active


def cookie_principal(request: Request, c: Container) -> Principal | None:
    """The principal of the request's console session (None: no session cookie), after
    the CSRF check for writes."""
    active = active_session(request, c)
    if active is None:
        return None
    if active.terminal_id is not None:
        route = getattr(request.scope.get("route"), "path", None)
        refusal = tap_in_refusal(
            request.method, route, request.path_params, active.terminal_zone_id
        )
        if refusal is not None:
            raise PermissionDenied(refusal)
    if request.method not in READ_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), active.csrf_token.encode()):
            raise CsrfRefused()
    return active.principal


def is_secure(request: Request, settings: ConsoleSettings) -> bool:
    """HTTPS here, or behind a TLS proxy (the console's public URL says so)."""
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")


def set_session_cookie(
    response: Response, request: Request, c: Container, issued: web_sessions.IssuedSession
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        expires=issued.expires_at,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_secure(request, c.settings.console),
    )


def clear_session_cookie(response: Response, request: Request, c: Container) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_secure(request, c.settings.console),
    )
