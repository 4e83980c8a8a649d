"""Separation of duties (issue 13): over the API no one acts as another person, and what
an approval rests on needs two people.

- An API token is minted by its owner (the host CLI is the operator's way in).
- An approver key enrolled over the API signs nothing until a second person with the
  safety role, not its owner, confirms it.
- The safety and admin roles, asked for over the API, are added only when a second
  person with the admin or safety role confirms: not the one who asked, not the grantee.

Pure rules; ``people.role_grants`` and ``safety.keys`` apply them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from kittylab.domain.enums import Role

PRIVILEGED_ROLES: frozenset[Role] = frozenset({Role.SAFETY, Role.ADMIN})
"""Roles that decide approvals or who may act: granted over the API by two people."""

GRANT_CONFIRMERS: frozenset[Role] = frozenset({Role.SAFETY, Role.ADMIN})
KEY_CONFIRMERS: frozenset[Role] = frozenset({Role.SAFETY})


class GrantStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"


@dataclass(frozen=True)
class RoleChange:
    """A requested set of roles, split: ``now`` is what the person holds at once (removals
    and unprivileged roles take effect immediately), ``held`` the privileged roles that
    wait for a second person."""

    now: tuple[Role, ...]
    held: tuple[Role, ...]


def split_roles(current: Iterable[Role], requested: Iterable[Role]) -> RoleChange:
    have = set(current)
    wanted = list(dict.fromkeys(requested))
    held = tuple(r for r in wanted if r in PRIVILEGED_ROLES and r not in have)
    now = tuple(r for r in wanted if r not in held)
    return RoleChange(now, held)


def token_mint_refusal(caller_id: UUID, owner_id: UUID) -> str | None:
    if caller_id != owner_id:
        return (
            "API tokens are minted by their owner, never for someone else (an admin "
            "included); a person without a token gets one on the server host "
            "(`kittylab users token NAME`)"
        )
    return None


def key_enrolment_refusal(caller_id: UUID, owner_id: UUID) -> str | None:
    if caller_id != owner_id:
        return (
            "approver keys are enrolled by their owner, with a signed challenge; "
            "no one enrols a key for someone else over the API"
        )
    return None


def key_confirm_refusal(
    confirmer_id: UUID, confirmer_roles: Iterable[Role], owner_id: UUID
) -> str | None:
    if confirmer_id == owner_id:
        return "a key is confirmed by a second person with the safety role, not its owner"
    if not set(confirmer_roles) & KEY_CONFIRMERS:
        return "confirming an approver key needs the safety role"
    return None


def grant_confirm_refusal(
    confirmer_id: UUID, confirmer_roles: Iterable[Role], requested_by: UUID, grantee: UUID
) -> str | None:
    if confirmer_id == requested_by:
        return "a role grant is confirmed by a second person, not the one who asked for it"
    if confirmer_id == grantee:
        return "no one confirms a role grant to themselves"
    if not set(confirmer_roles) & GRANT_CONFIRMERS:
        return "confirming a role grant needs the admin or safety role"
    return None


def grant_refuse_refusal(
    refuser_id: UUID, refuser_roles: Iterable[Role], requested_by: UUID
) -> str | None:
    """The one who asked may withdraw; any admin or safety person may refuse."""
    if refuser_id == requested_by or set(refuser_roles) & GRANT_CONFIRMERS:
        return None
    return "refusing a role grant needs the admin or safety role"
