"""Policy evaluation: may this request run now, what does it still need, or why not.

Pure: the service gathers the facts (the device and its zone, the initiator, the zone's
access policies, the device's locks) and acts on the answer.

- Actions that make the lab safer (pause, cancel, power off, lock a door, lights on,
  cool down) are never held for approval: stopping a machine never waits for anyone. A
  lock stops none of them except ``light_on`` on the locked light itself.
- ``door_unlock`` and ``power_on`` are hazardous everywhere; any other intent is hazardous
  where an access policy of the zone lists it.
- An intent that adds energy (the lockout table, ``safety.lockout``) on a locked-out device
  is denied, naming who holds the lock, hazardous or not, before anything else.
- Otherwise it needs approval: the governing policy's roles (safety and admin when no
  policy governs it: fail closed), two distinct approvers in high-hazard zones or where the
  policy asks, presence in the zone, and the policy's PPE checks; in a zone that
  requires PPE (``Zone.requires_ppe``), a PPE confirmation with every approval even when
  no policy lists items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from kittylab.domain.command_rules import SAFE_INTENTS, is_hazardous
from kittylab.domain.enums import HazardLevel, Role, SafetyEventType
from kittylab.safety.lockout import LockFact, lock_refusal

# Approvers when no policy names any: the people whose job is safety.
DEFAULT_APPROVER_ROLES = frozenset({Role.SAFETY, Role.ADMIN})


class PresenceOf(StrEnum):
    """Whose presence in the zone a policy requires."""

    INITIATOR = "initiator"
    APPROVER = "approver"


@dataclass(frozen=True)
class PolicyFact:
    """An active access policy of the device's zone."""

    id: UUID
    name: str
    intents: frozenset[str]
    required_roles: frozenset[Role]
    requires_dual_confirm: bool
    requires_presence: bool
    ppe: tuple[str, ...] = ()
    presence_of: PresenceOf = PresenceOf.INITIATOR


@dataclass(frozen=True)
class HazardRequest:
    intent: str
    device_id: UUID
    device_name: str
    zone_id: UUID
    zone_name: str
    hazard_level: HazardLevel
    initiator_id: UUID
    at: datetime
    zone_requires_ppe: bool = False


@dataclass(frozen=True)
class Requirements:
    """What an approval needs before the command may be sent."""

    roles: frozenset[Role]
    approvals: int
    presence_of: PresenceOf | None
    ppe: tuple[str, ...]
    policy_id: UUID | None
    policy_name: str | None
    zone_ppe: bool = False
    """The zone requires PPE: each approval confirms some (``ppe`` names which, if any)."""

    def to_json(self) -> dict[str, object]:
        return {
            "roles": sorted(r.value for r in self.roles),
            "approvals": self.approvals,
            "presenceOf": self.presence_of.value if self.presence_of else None,
            "ppe": list(self.ppe),
            "zonePpe": self.zone_ppe,
            "policy": self.policy_name,
        }

    @classmethod
    def from_json(cls, data: dict[str, object], policy_id: UUID | None) -> Requirements:
        roles = data.get("roles") or []
        ppe = data.get("ppe") or []
        presence = data.get("presenceOf")
        policy = data.get("policy")
        if not isinstance(roles, list) or not isinstance(ppe, list):
            raise ValueError("stored requirements hold roles and ppe as lists")
        return cls(
            roles=frozenset(Role(str(r)) for r in roles),
            approvals=int(str(data.get("approvals", 1))),
            presence_of=PresenceOf(str(presence)) if presence else None,
            ppe=tuple(str(p) for p in ppe),
            policy_id=policy_id,
            policy_name=str(policy) if policy else None,
            zone_ppe=data.get("zonePpe") is True,
        )


@dataclass(frozen=True)
class Allow:
    pass


@dataclass(frozen=True)
class NeedsApproval:
    event_type: SafetyEventType
    requirements: Requirements


@dataclass(frozen=True)
class Deny:
    reason: str
    event_type: SafetyEventType


Decision = Allow | NeedsApproval | Deny


def event_type_for(intent: str) -> SafetyEventType:
    if intent == "door_unlock":
        return SafetyEventType.UNLOCK
    if intent == "power_on":
        return SafetyEventType.POWER_ENABLE
    return SafetyEventType.HAZARD_REQUEST


def evaluate(
    request: HazardRequest,
    policies: Sequence[PolicyFact],
    locks: Sequence[LockFact] = (),
) -> Decision:
    # The lock first: a locked device refuses every intent that adds energy, safe or
    # hazardous by the policy (``light_on`` on a locked light), for everyone.
    refusal = lock_refusal(request.intent, locks)
    if refusal is not None:
        return Deny(refusal, event_type_for(request.intent))
    if request.intent in SAFE_INTENTS:
        return Allow()
    governing = [p for p in policies if request.intent in p.intents]
    if not is_hazardous(request.intent, {i for p in policies for i in p.intents}):
        return Allow()
    event_type = event_type_for(request.intent)
    return NeedsApproval(
        event_type,
        requirements_for(request.hazard_level, governing, zone_ppe=request.zone_requires_ppe),
    )


def requirements_for(
    hazard_level: HazardLevel, governing: Sequence[PolicyFact], *, zone_ppe: bool = False
) -> Requirements:
    """The strictest combination of every policy governing the intent (the manifest allows
    one per intent per zone, but two would both have to hold). A high-hazard zone always
    needs two approvers and presence; a zone that requires PPE, a PPE confirmation."""
    high = hazard_level is HazardLevel.HIGH
    if not governing:
        return Requirements(
            roles=DEFAULT_APPROVER_ROLES,
            approvals=2 if high else 1,
            presence_of=PresenceOf.INITIATOR if high else None,
            ppe=(),
            policy_id=None,
            policy_name=None,
            zone_ppe=zone_ppe,
        )
    roles: frozenset[Role] | None = None
    for p in governing:
        roles = p.required_roles if roles is None else roles & p.required_roles
    dual = high or any(p.requires_dual_confirm for p in governing)
    presence: PresenceOf | None = None
    if any(p.presence_of is PresenceOf.APPROVER and p.requires_presence for p in governing):
        presence = PresenceOf.APPROVER
    elif high or any(p.requires_presence for p in governing):
        presence = PresenceOf.INITIATOR
    ppe: list[str] = []
    for p in governing:
        ppe.extend(item for item in p.ppe if item not in ppe)
    first = governing[0]
    return Requirements(
        # Two policies naming disjoint roles leave nobody who may approve: that is a
        # misconfiguration, and it must hold the request rather than open it up.
        roles=roles or frozenset(),
        approvals=2 if dual else 1,
        presence_of=presence,
        ppe=tuple(ppe),
        policy_id=first.id,
        policy_name=", ".join(p.name for p in governing),
        zone_ppe=zone_ppe,
    )


# -- approvals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalFact:
    approver_id: UUID
    approver_name: str


@dataclass(frozen=True)
class Approver:
    """Someone offering an approval, with the facts the requirements are checked against."""

    user_id: UUID
    name: str
    roles: frozenset[Role]
    present: bool
    ppe: frozenset[str] = field(default_factory=frozenset)


def approval_refusal(
    requirements: Requirements,
    initiator_id: UUID,
    approver: Approver,
    earlier: Sequence[ApprovalFact],
    *,
    initiator_present: bool,
    zone_name: str,
) -> str | None:
    """Why this approval cannot count, or ``None``. Checked before it is recorded, so a
    refused approval leaves nothing behind (its nonce stays unused)."""
    if approver.user_id == initiator_id:
        return "the person who asked cannot approve their own request"
    if any(a.approver_id == approver.user_id for a in earlier):
        return f"{approver.name} has already approved this request; it needs a different person"
    if not approver.roles & requirements.roles:
        if not requirements.roles:
            return "no role may approve this: the zone's policies name no common role"
        names = " or ".join(sorted(r.value for r in requirements.roles))
        return f"approving this needs the {names} role; {approver.name} has none of them"
    missing_ppe = [item for item in requirements.ppe if item not in approver.ppe]
    if missing_ppe:
        return f"PPE not confirmed: {', '.join(missing_ppe)}"
    if requirements.zone_ppe and not approver.ppe:
        return (
            f"PPE not confirmed: {zone_name} requires PPE; confirm what you wear with the "
            "approval (kittylab approve … --ppe ITEM)"
        )
    if requirements.presence_of is PresenceOf.APPROVER and not approver.present:
        return (
            f"{approver.name} is not checked in to {zone_name} (presence is required, by a "
            f"source {zone_name} counts)"
        )
    if requirements.presence_of is PresenceOf.INITIATOR and not initiator_present:
        return (
            f"the person who asked is not checked in to {zone_name}; presence in the zone, "
            "by a source it counts (in a high-hazard zone: a badge, a check-in confirmed by "
            "someone present, or an override), is required before this can be approved"
        )
    return None


def missing(
    requirements: Requirements,
    approvals: Sequence[ApprovalFact],
    *,
    initiator_present: bool,
    zone_name: str,
) -> list[str]:
    """What the request still lacks, in words an approver understands."""
    lacking: list[str] = []
    still = requirements.approvals - len(approvals)
    if still > 0:
        roles = (
            " or ".join(sorted(r.value for r in requirements.roles)) or "no role (misconfigured)"
        )
        who = "approvals" if still > 1 else "approval"
        distinct = " from different people, not the requester" if requirements.approvals > 1 else ""
        lacking.append(f"{still} signed {who} by {roles}{distinct}")
    if requirements.presence_of is PresenceOf.INITIATOR and not initiator_present:
        lacking.append(f"the requester checked in to {zone_name}")
    if requirements.presence_of is PresenceOf.APPROVER and still > 0:
        lacking.append(f"each approver checked in to {zone_name}")
    if requirements.ppe and still > 0:
        lacking.append(f"PPE confirmed with the approval: {', '.join(requirements.ppe)}")
    elif requirements.zone_ppe and still > 0:
        lacking.append(f"PPE confirmed with the approval ({zone_name} requires PPE)")
    return lacking
