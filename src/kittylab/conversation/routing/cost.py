"""Prices and budgets: what an escalation costs and whether a person may spend it today.

Costs are in US dollars as ``Decimal``. A model without a price-table entry cannot be
budgeted, so an escalation to it is refused (fail closed) rather than run at unknown cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_MILLION = Decimal(1_000_000)
_CENT_FRACTION = Decimal("0.000001")  # the decision column keeps six decimals


@dataclass(frozen=True)
class Price:
    input_per_million: Decimal
    output_per_million: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        total = (
            Decimal(input_tokens) * self.input_per_million
            + Decimal(output_tokens) * self.output_per_million
        ) / _MILLION
        return total.quantize(_CENT_FRACTION, rounding=ROUND_HALF_UP)


def estimate_tokens(text: str) -> int:
    """A pessimistic token count for budgeting before the call (about 3 characters per
    token; the reported usage replaces it afterwards)."""
    return max(1, len(text) // 3 + 1)


@dataclass(frozen=True)
class BudgetCheck:
    allowed: bool
    reason: str | None
    estimate: Decimal


def check_budget(spent_today: Decimal, estimate: Decimal, daily_budget: Decimal) -> BudgetCheck:
    if spent_today + estimate > daily_budget:
        return BudgetCheck(
            False,
            f"the daily budget of ${daily_budget} would be exceeded "
            f"(spent ${spent_today.quantize(Decimal('0.0001'))}, this needs up to "
            f"${estimate.quantize(Decimal('0.0001'))})",
            estimate,
        )
    return BudgetCheck(True, None, estimate)
