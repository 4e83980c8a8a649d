"""``/api/role-grants``: the safety and admin roles asked for over the API, waiting for a
second person (issue 13). Asked for by changing a person (``POST /api/users``,
``PATCH /api/users/{id}``); confirmed or refused here."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from kittylab.adapters.db.tables import RoleGrant
from kittylab.api.auth import Caller, SafetyCaller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.schemas import RoleGrantOut
from kittylab.bootstrap import Container
from kittylab.domain.duties import GrantStatus
from kittylab.people import role_grants

router = APIRouter(prefix="/api/role-grants", tags=["users"])


@router.get("", response_model=Page[RoleGrantOut])
def list_role_grants(
    _: SafetyCaller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: GrantStatus | None = None,
    user_id: Annotated[UUID | None, Query(alias="userId")] = None,
) -> Page[RoleGrantOut]:
    """Role grants, newest first (safety and admins)."""
    stmt = where_equal(
        select(RoleGrant),
        (RoleGrant.status, status.value if status else None),
        (RoleGrant.user_id, user_id),
    )
    return paginate(uow, stmt, RoleGrant.id, cursor, limit, RoleGrantOut.model_validate)


@router.post("/{grant_id}/confirm", response_model=RoleGrantOut)
def confirm_role_grant(
    grant_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> RoleGrant:
    """Confirm a pending grant: the role is added now. A second person with the admin or
    safety role: not the one who asked, not the grantee."""
    return role_grants.confirm(uow, grant_id, by=caller.user_id, roles=caller.roles, now=c.clock())


@router.post("/{grant_id}/refuse", response_model=RoleGrantOut)
def refuse_role_grant(
    grant_id: UUID,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> RoleGrant:
    """Refuse a pending grant (admin or safety), or withdraw your own request."""
    return role_grants.refuse(uow, grant_id, by=caller.user_id, roles=caller.roles, now=c.clock())
