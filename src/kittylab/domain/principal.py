"""Who is calling, as far as authorisation is concerned."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from kittylab.domain.enums import Role


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    username: str
    roles: frozenset[Role]

    def has_any(self, *roles: Role) -> bool:
        return bool(self.roles & set(roles))

    @property
    def reads_all_records(self) -> bool:
        """Safety and admin read every audit-relevant record (safety events, routing
        decisions, conversations); everyone else reads their own."""
        return self.has_any(Role.SAFETY, Role.ADMIN)
