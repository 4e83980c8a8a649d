"""``/api/routing``: the routing decisions — each one, the log with its filters, and the
summary (share served locally, latency per tier, spend per tier per day, cache hit rate).
Everyone sees their own decisions; the safety and admin roles see all."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Select, cast, func, select
from sqlalchemy.types import Date

from kittylab.adapters.db.tables import RoutingDecision
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import CamelModel, RoutingDecisionOut
from kittylab.bootstrap import Container
from kittylab.domain.enums import Tier
from kittylab.domain.errors import PermissionDenied, ValidationFailed
from kittylab.domain.principal import Principal

router = APIRouter(prefix="/api/routing", tags=["routing"])


class RoutingLogOut(RoutingDecisionOut):
    details: dict[str, Any]


class TierSummary(CamelModel):
    tier: Tier
    requests: int
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    spend: Decimal


class DailySpend(CamelModel):
    day: date
    tier: Tier
    spend: Decimal
    requests: int


class CacheSummary(CamelModel):
    hits: int
    misses: int
    hit_rate: float | None


class RoutingSummaryOut(CamelModel):
    since: datetime
    requests: int
    local_share: float | None
    tiers: list[TierSummary]
    spend_per_day: list[DailySpend]
    cache: CacheSummary


Since = Annotated[datetime | None, Query(description="Only decisions at or after this time.")]


def _scoped(stmt: Select[Any], caller: Principal) -> Select[Any]:
    if caller.reads_all_records:
        return stmt
    return stmt.where(RoutingDecision.performed_by == caller.user_id)


def _zoned(since: datetime | None) -> datetime | None:
    if since is not None and since.tzinfo is None:
        raise ValidationFailed("since", "needs a time zone (e.g. 2026-11-27T10:00:00Z)")
    return since


@router.get("/decisions", response_model=Page[RoutingDecisionOut])
def list_decisions(
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    conversation_id: Annotated[UUID | None, Query(alias="conversationId")] = None,
    tier: Tier | None = None,
    performed_by: Annotated[UUID | None, Query(alias="performedBy")] = None,
) -> Page[RoutingDecisionOut]:
    stmt = where_equal(
        select(RoutingDecision),
        (RoutingDecision.conversation_id, conversation_id),
        (RoutingDecision.selected_tier, tier),
        (RoutingDecision.performed_by, performed_by),
    )
    return paginate(
        uow,
        _scoped(stmt, caller),
        RoutingDecision.id,
        cursor,
        limit,
        RoutingDecisionOut.model_validate,
    )


@router.get("/decisions/{decision_id}", response_model=RoutingDecisionOut)
def get_decision(decision_id: UUID, caller: Caller, uow: UnitOfWork) -> RoutingDecision:
    """A decision, for the person it was made for and the safety and admin roles."""
    row = get_or_404(uow, RoutingDecision, decision_id, "routing decision")
    if not caller.reads_all_records and row.performed_by != caller.user_id:
        raise PermissionDenied("only the safety and admin roles read others' decisions")
    return row


@router.get("/logs", response_model=Page[RoutingLogOut])
def routing_logs(
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    conversation_id: Annotated[UUID | None, Query(alias="conversationId")] = None,
    selected_tier: Annotated[Tier | None, Query(alias="selectedTier")] = None,
    since: Since = None,
) -> Page[RoutingLogOut]:
    stmt = where_equal(
        select(RoutingDecision),
        (RoutingDecision.conversation_id, conversation_id),
        (RoutingDecision.selected_tier, selected_tier),
    )
    if (start := _zoned(since)) is not None:
        stmt = stmt.where(RoutingDecision.created_at >= start)
    return paginate(
        uow, _scoped(stmt, caller), RoutingDecision.id, cursor, limit,
        RoutingLogOut.model_validate,
    )  # fmt: skip


@router.get("/summary", response_model=RoutingSummaryOut)
def routing_summary(
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
    since: Since = None,
) -> RoutingSummaryOut:
    """Over the decisions since ``since`` (default: the last 7 days)."""
    start = _zoned(since) or c.clock() - timedelta(days=7)
    where = [RoutingDecision.created_at >= start]
    if not caller.reads_all_records:
        where.append(RoutingDecision.performed_by == caller.user_id)
    latency = RoutingDecision.latency_ms
    rows = uow.execute(
        select(
            RoutingDecision.selected_tier,
            func.count(),
            func.percentile_cont(0.5).within_group(latency),
            func.percentile_cont(0.95).within_group(latency),
            func.coalesce(func.sum(RoutingDecision.cost_estimate), 0),
        )
        .where(*where)
        .group_by(RoutingDecision.selected_tier)
    ).all()
    tiers = [
        TierSummary(
            tier=tier, requests=n, p50_latency_ms=p50, p95_latency_ms=p95, spend=Decimal(spend)
        )
        for tier, n, p50, p95, spend in sorted(rows, key=lambda r: list(Tier).index(r[0]))
    ]
    day = cast(func.timezone("UTC", RoutingDecision.created_at), Date)
    daily = uow.execute(
        select(
            day,
            RoutingDecision.selected_tier,
            func.coalesce(func.sum(RoutingDecision.cost_estimate), 0),
            func.count(),
        )
        .where(*where)
        .group_by(day, RoutingDecision.selected_tier)
        .order_by(day, RoutingDecision.selected_tier)
    ).all()
    cache_state = RoutingDecision.details["cache"].astext
    hits, misses = uow.execute(
        select(
            func.count().filter(cache_state == "hit"),
            func.count().filter(cache_state == "miss"),
        ).where(*where)
    ).one()
    total = sum(t.requests for t in tiers)
    local = sum(t.requests for t in tiers if t.tier is Tier.LOCAL)
    return RoutingSummaryOut(
        since=start,
        requests=total,
        local_share=(local / total) if total else None,
        tiers=tiers,
        spend_per_day=[
            DailySpend(day=d, tier=t, spend=Decimal(s), requests=n) for d, t, s, n in daily
        ],
        cache=CacheSummary(
            hits=hits, misses=misses, hit_rate=(hits / (hits + misses)) if hits + misses else None
        ),
    )
