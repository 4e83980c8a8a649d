"""Bearer-token authentication, per-route role checks and the request's unit of work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.errors import AuthenticationRequired, PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.people.identity import authenticate

_bearer = HTTPBearer(auto_error=False, description="A token from `kittylab users token NAME`.")

# Requests holding a database session at once. Further requests wait (without a thread)
# instead of exhausting the connection pool, which bootstrap sizes above this.
API_DB_CONCURRENCY = 16


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def unit_of_work(c: Annotated[Container, Depends(container)]) -> Iterator[Session]:
    """One transaction per request, shared by authentication and the handler. It ends
    before the response is sent (scope ``function``): a commit that fails becomes the
    response, never a success the database did not keep."""
    with c.database.unit_of_work() as session:
        yield session


UnitOfWork = Annotated[
    Session, Depends(unit_of_work, scope="function", max_concurrency=API_DB_CONCURRENCY)
]

# How stale ``last_used_at`` may get: writing it on every request would turn each read
# into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def current_principal(
    request: Request,
    c: Annotated[Container, Depends(container)],
    uow: UnitOfWork,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationRequired("missing bearer token")
    principal = authenticate(uow, credentials.credentials, c.clock(), LAST_USED_RESOLUTION)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(current_principal)]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting callers that hold any of ``roles``."""
    names = " or ".join(r.value for r in roles)

    def check(principal: Caller) -> Principal:
        if not principal.has_any(*roles):
            raise PermissionDenied(f"this needs the {names} role")
        return principal

    return check


AdminCaller = Annotated[Principal, Depends(require(Role.ADMIN))]
SafetyCaller = Annotated[Principal, Depends(require(Role.SAFETY, Role.ADMIN))]
