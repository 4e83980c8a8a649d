"""``/api/policies``: the zones' access policies (changed through the lab manifest,
``POST /api/lab/apply``)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy import select

from kittylab.adapters.db.tables import AccessPolicy
from kittylab.api.auth import Caller, UnitOfWork
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import where_equal
from kittylab.api.schemas import PolicyOut

router = APIRouter(prefix="/api/policies", tags=["lab"])


@router.get("", response_model=Page[PolicyOut])
def list_policies(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    zone_id: Annotated[UUID | None, Query(alias="zoneId")] = None,
    include_retired: Annotated[bool, Query(alias="includeRetired")] = False,
) -> Page[PolicyOut]:
    stmt = where_equal(select(AccessPolicy), (AccessPolicy.zone_id, zone_id))
    if not include_retired:
        stmt = stmt.where(AccessPolicy.retired_at.is_(None))
    return paginate(uow, stmt, AccessPolicy.id, cursor, limit, PolicyOut.model_validate)
