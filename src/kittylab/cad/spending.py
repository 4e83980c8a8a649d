"""What online CAD providers cost, and each person's daily budget for them.

Every call to an online provider (Zoo, Tripo) is priced from the settings' table
(``KITTYLAB_CAD__ONLINE_PRICES_USD``) and counts in the same per-person daily budget as the
routing tiers' paid calls (``KITTYLAB_QUERY__DAILY_BUDGET_USD``). The charge is recorded
(``CADCharge``) before the call as ``held`` at its estimate — committed, so every process
sees it — and after the call ``settled`` or ``released``::

    hold ──► held ──► settled   the call was made (succeeded, or failed after the service
      │                         took the request: it may have been billed)
      │          └──► released  the provider was unavailable: nothing was asked for
      └──► refused (nothing recorded) past the budget, or for a provider with no price

A provider without a price is refused (fail closed), as the routing tiers refuse a model
with no price-table entry. Holds of one person are taken one at a time (a PostgreSQL
advisory lock on the person), so two concurrent jobs cannot overshoot the budget together.
Jobs with no person (on-host ``kittylab cad``, system runs) are charged and recorded but not
capped: the budget is per person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import CADCharge, RoutingDecision
from kittylab.cad.errors import CadBudgetExceeded
from kittylab.conversation.routing.cost import check_budget
from kittylab.domain.enums import CADProvider

HELD, SETTLED, RELEASED = "held", "settled", "released"


@dataclass(frozen=True)
class Budget:
    """The price table (US dollars per call, by provider name) and the daily budget."""

    prices: Mapping[str, Decimal]
    daily_usd: Decimal

    def price(self, provider: str) -> Decimal | None:
        return self.prices.get(provider)


def spent_today(session: Session, user_id: UUID | None, now: datetime) -> Decimal:
    """What ``user_id`` has spent since midnight (UTC, the clock's): the routing decisions'
    costs plus the online CAD charges held or settled."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    routing = session.scalar(
        select(func.coalesce(func.sum(RoutingDecision.cost_estimate), 0)).where(
            RoutingDecision.performed_by == user_id, RoutingDecision.created_at >= midnight
        )
    )
    cad = session.scalar(
        select(func.coalesce(func.sum(CADCharge.cost_usd), 0)).where(
            CADCharge.user_id == user_id,
            CADCharge.created_at >= midnight,
            CADCharge.status != RELEASED,
        )
    )
    return Decimal(routing or 0) + Decimal(cad or 0)


def check(
    session: Session, budget: Budget, provider: str, user_id: UUID | None, now: datetime
) -> Decimal:
    """The call's estimate when ``user_id`` may make it now; ``CadBudgetExceeded`` when
    the provider has no price or the estimate does not fit what is left of today's
    budget. Records nothing."""
    estimate = budget.price(provider)
    if estimate is None:
        raise CadBudgetExceeded(
            f"{provider} has no entry in the CAD price table "
            "(KITTYLAB_CAD__ONLINE_PRICES_USD), so its cost cannot be budgeted",
            provider=provider,
        )
    if user_id is None or estimate == 0:
        return estimate
    verdict = check_budget(spent_today(session, user_id, now), estimate, budget.daily_usd)
    if not verdict.allowed:
        raise CadBudgetExceeded(
            f"{provider} costs about ${estimate} a call and {verdict.reason}",
            provider=provider,
        )
    return estimate


def hold(
    session: Session,
    budget: Budget,
    *,
    job_id: UUID,
    provider: CADProvider,
    user_id: UUID | None,
    now: datetime,
) -> CADCharge:
    """Record a ``held`` charge at the call's estimate, or raise ``CadBudgetExceeded``
    (see ``check``). The caller commits before making the call."""
    if user_id is not None:
        # One hold per person at a time, across processes: the check and the insert must
        # not interleave with another job's.
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"kittylab-budget:{user_id}"},
        )
    estimate = check(session, budget, provider.value, user_id, now)
    charge = CADCharge(
        cad_job_id=job_id,
        user_id=user_id,
        provider=provider,
        estimate_usd=estimate,
        cost_usd=estimate,
        status=HELD,
        created_at=now,
    )
    session.add(charge)
    session.flush()
    return charge


def close(session: Session, charge_id: UUID, *, spent: bool, now: datetime) -> CADCharge | None:
    """Settle the held charge at its estimate (``spent``: neither Zoo nor Tripo reports a
    price with its answer) or release it; a charge already closed is left as it is."""
    charge = session.get(CADCharge, charge_id, with_for_update=True)
    if charge is None or charge.status != HELD:
        return charge
    charge.status = SETTLED if spent else RELEASED
    if not spent:
        charge.cost_usd = Decimal(0)
    charge.settled_at = now
    session.flush()
    return charge
