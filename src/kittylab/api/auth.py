"""Bearer-token authentication, per-route role checks and the request's unit of work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from kittylab.adapters.db import unit_of_work as db
from kittylab.api import networks, web_auth
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.errors import AuthenticationRequired, PermissionDenied
from kittylab.domain.machine_scopes import scope_refusal
from kittylab.domain.principal import Principal

_bearer = HTTPBearer(auto_error=False, description="A token from `kittylab users token NAME`.")

# Requests holding a database session at once. Further requests wait (without a thread)
# instead of exhausting the connection pool, which bootstrap sizes above this.
API_DB_CONCURRENCY = 16


async def container(request: Request) -> Container:
    # async: a plain attribute read, not worth a thread pool hop (sync dependencies run
    # in the pool).
    c: Container = request.app.state.container
    return c


def unit_of_work(c: Annotated[Container, Depends(container)]) -> Iterator[db.UnitOfWork]:
    """The handler's transaction (authentication has its own, see ``current_principal``). It ends
    before the response is sent (scope ``function``): a commit that fails becomes the
    response, never a success the database did not keep. What the handler's use cases
    registered with ``after_commit`` (a dispatch job, an announcement) runs once it has
    committed, still before the response; a router never commits or defers by hand."""
    with c.database.unit_of_work() as session:
        yield session


UnitOfWork = Annotated[
    db.UnitOfWork, Depends(unit_of_work, scope="function", max_concurrency=API_DB_CONCURRENCY)
]

# How stale ``last_used_at`` may get: writing it on every request would turn each read
# into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# Token lookups at once. Each holds a connection only for its short transaction; with the
# handlers' API_DB_CONCURRENCY that stays under the pool bootstrap builds (20 + 10
# overflow), leaving room for the server's background loops.
AUTH_DB_CONCURRENCY = 8


async def current_principal(
    request: Request,
    c: Annotated[Container, Depends(container)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, authenticated in a short transaction of its own that commits (the
    ``last_used_at`` touch) and gives its connection back before the handler's work
    begins. A handler may wait seconds (for a model, a printer, a file), and the token
    lookup must not hold a connection, nor the token row's lock, while it does. A server
    remembers a token's answer for a few seconds, forgetting it when people change
    (``people.principal_cache``). Every route authenticates through this one dependency
    (``Caller``, ``require``), which also marks a caller from outside the lab's trusted
    networks ``remote`` (``api/networks.py``)."""
    now = c.clock()
    if credentials is None:
        # Issue 17: without a bearer token, a console session cookie (CSRF-checked for
        # writes).
        principal = await run_in_threadpool(web_auth.cookie_principal, request, c)
        if principal is None:
            raise AuthenticationRequired("missing bearer token")
    else:
        if credentials.scheme.lower() != "bearer":
            raise AuthenticationRequired("missing bearer token")
        token = credentials.credentials
        # A remembered token answers on the loop; a lookup runs in the thread pool. Scope
        # and network are judged per request, never remembered.
        principal = c.principals.remembered(token, now)
        if principal is None:
            principal = await run_in_threadpool(
                c.principals.authenticate, c.database, token, now, LAST_USED_RESOLUTION
            )
    _check_scope(request, principal)
    if not networks.is_trusted(request, c.settings.http):
        # From outside the lab: reads only, whatever the token (see api/networks.py).
        principal = replace(principal, remote=True)
    request.state.principal = principal
    if principal.remote:
        networks.refuse_remote_write(request)
    return principal


def _check_scope(request: Request, principal: Principal) -> None:
    """A machine token reaches only its scopes' routes (``domain.machine_scopes``), named
    by the matched route's path template."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    refusal = scope_refusal(principal.scopes, request.method, template)
    if refusal is not None:
        raise PermissionDenied(refusal)


Caller = Annotated[Principal, Depends(current_principal, max_concurrency=AUTH_DB_CONCURRENCY)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting callers that hold any of ``roles``."""
    names = " or ".join(r.value for r in roles)

    async def check(principal: Caller) -> Principal:  # pure: no thread pool hop
        if not principal.has_any(*roles):
            raise PermissionDenied(f"this needs the {names} role")
        return principal

    return check


AdminCaller = Annotated[Principal, Depends(require(Role.ADMIN))]
SafetyCaller = Annotated[Principal, Depends(require(Role.SAFETY, Role.ADMIN))]
