"""What CAD generation raises, beyond the domain's own errors::

    InfrastructureError
    ├── CadGenerationFailed   every planned provider failed; the job is failed and operators
    │                         were alerted (``alerts`` says how many)
    └── ProviderUnavailable   a provider cannot be used now (raised by providers)
    Busy
    └── CadBusy               every provider was busy: nothing was built, nobody alerted;
                              a new request may succeed later

    Conflict
    └── CadBudgetExceeded     an online provider's call would pass the person's daily
                              budget (or has no price): refused before it is made; the
                              offline build is offered instead

Refusals of the request itself (an unreadable prompt, an impossible part, no provider for
the policy) are ``ValidationFailed`` and ``Conflict`` from ``kittylab.domain.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from kittylab.domain.errors import Busy, Conflict, InfrastructureError

if TYPE_CHECKING:
    from kittylab.cad.job_details import Attempt


class CadGenerationFailed(InfrastructureError):
    """Every planned provider failed. ``attempts`` says what each one answered; ``alerts``
    how many operator alerts were queued (0: nobody could be alerted)."""

    def __init__(
        self,
        job_id: UUID,
        attempts: Sequence[Attempt],
        *,
        reason: str | None = None,
        alerts: int = 0,
    ) -> None:
        tried = "; ".join(f"{a.provider}: {a.error or a.outcome}" for a in attempts)
        super().__init__(f"CAD job {job_id} failed ({reason or tried or 'no provider ran'})")
        self.job_id = job_id
        self.attempts = list(attempts)
        self.alerts = alerts


class CadBusy(Busy):
    """The job's providers were all busy or unavailable (none failed): nothing was built,
    the job is failed without alerting anyone, and a new request may succeed later."""

    def __init__(self, job_id: UUID, retry_after_seconds: float) -> None:
        super().__init__(
            f"CAD job {job_id} was not built: the CAD workers are all busy; retry shortly",
            retry_after_seconds,
        )
        self.job_id = job_id


class ProviderUnavailable(InfrastructureError):
    """The provider cannot be used now (not installed, not configured, unreachable)."""


class CadBudgetExceeded(Conflict):
    """An online provider's call would pass the person's daily budget, or the provider has
    no price to budget with. ``offline_offer`` says whether the offline part library can
    build the prompt instead (``policyMode: offline``), once the service has decided."""

    def __init__(self, reason: str, *, provider: str, offline_offer: bool = False) -> None:
        super().__init__(reason, field="policyMode")
        self.reason = reason
        self.provider = provider
        self.offline_offer = offline_offer

    def offering_offline(self, available: bool) -> CadBudgetExceeded:
        """The same refusal, saying whether the offline build is offered."""
        return CadBudgetExceeded(self.reason, provider=self.provider, offline_offer=available)

    def __str__(self) -> str:
        offer = (
            "; the part can be built offline here at no cost (policyMode offline)"
            if self.offline_offer
            else "; the offline part library cannot build this prompt"
        )
        return f"online CAD refused: {self.reason}{offer}"
