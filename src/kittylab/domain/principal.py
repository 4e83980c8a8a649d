"""Who is calling, as far as authorisation is concerned."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from kittylab.domain.enums import Role

CAD_GENERATION_ROLES = (Role.ENGINEER, Role.OPERATOR, Role.ADMIN)
"""Who may start CAD generation, which can spend money on online providers and ties up
the lab's workers: the people who design parts and run the machines. Safety reviews and
approves; it does not commission parts. Reading jobs and artifacts stays open to all."""


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    username: str
    roles: frozenset[Role]
    remote: bool = False
    """The request came from outside the lab's trusted networks (``domain.networks``): it
    may read, never actuate, approve or change anything safety-relevant. Set by the API's
    authentication from the client's address; the on-host CLI is local."""
    token_id: UUID | None = None
    """The API token the request came with (None for internal actors and the CLI)."""
    scopes: frozenset[str] = frozenset()
    """A machine token's scopes (``domain.machine_scopes``); empty for a person's token."""

    def has_any(self, *roles: Role) -> bool:
        return bool(self.roles & set(roles))

    @property
    def may_generate_cad(self) -> bool:
        return self.has_any(*CAD_GENERATION_ROLES)

    @property
    def reads_all_records(self) -> bool:
        """Safety and admin read every audit-relevant record (safety events, routing
        decisions, conversations); everyone else reads their own."""
        return self.has_any(Role.SAFETY, Role.ADMIN)
