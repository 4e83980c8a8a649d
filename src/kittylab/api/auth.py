"""Bearer-token authentication and per-route role checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.errors import AuthenticationRequired, PermissionDenied
from kittylab.domain.principal import Principal
from kittylab.services.identity import authenticate

_bearer = HTTPBearer(auto_error=False, description="A token from `kittylab users token NAME`.")


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def unit_of_work(c: Annotated[Container, Depends(container)]) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back when
    it raises."""
    with c.database.unit_of_work() as session:
        yield session


UnitOfWork = Annotated[Session, Depends(unit_of_work)]


def current_principal(
    request: Request,
    c: Annotated[Container, Depends(container)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationRequired("missing bearer token")
    with c.database.unit_of_work() as session:
        principal = authenticate(session, credentials.credentials, c.clock())
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
