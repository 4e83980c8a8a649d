"""What the lab says about a command held for approval, and to whom.

One shape for every way a command is asked for: ``POST /api/device/{id}/command`` and
``POST /api/query`` both answer a held command with the same ``pendingHazard`` object
(``HeldCommand.pending_hazard``), and both announce it on ``kitty/safety/<eventId>``
once the request commits (``workflow.announce``), as its later decision is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Device, DeviceCommand, SafetyEvent, Zone
from kittylab.domain.devices import describe_intent
from kittylab.domain.zones import effective_dual_confirm
from kittylab.safety import workflow


@dataclass(frozen=True)
class HazardPolicy:
    """An access policy governing a held command's intent in its zone."""

    name: str
    required_roles: tuple[str, ...]
    requires_dual_confirm: bool
    requires_presence: bool
    ppe: tuple[str, ...]


@dataclass(frozen=True)
class HazardRequirements:
    """What a hazardous request needs before it may run, in its zone."""

    zone: str | None
    hazard_level: str | None
    policies: tuple[HazardPolicy, ...]


@dataclass(frozen=True)
class PendingHazard:
    """A command held for safety approval, as every route answers it (the API's
    ``pendingHazard``): what it is, its event, and what it still needs."""

    intent: str
    device_id: UUID
    device: str
    """The device's external id."""
    event_id: UUID
    command_id: UUID
    missing: tuple[str, ...]
    message: str
    """The whole situation in one sentence, for people."""
    zone: str | None
    hazard_level: str | None
    policies: tuple[HazardPolicy, ...]
    status: str = "awaiting_confirmation"


@dataclass(frozen=True)
class HeldCommand:
    """A command waiting for its safety event's approvals."""

    command: DeviceCommand
    event: SafetyEvent
    device: Device
    missing: list[str]
    """What the event still needs, in words (``workflow.missing``)."""
    requirements: HazardRequirements
    """The zone's hazard level and the policies governing the intent there."""

    def pending_hazard(self) -> PendingHazard:
        """The ``pendingHazard`` every route answers with."""
        intent = self.command.intent
        missing = "; ".join(self.missing) or "nothing"
        return PendingHazard(
            intent=intent,
            device_id=self.device.id,
            device=self.device.external_id,
            event_id=self.event.id,
            command_id=self.command.id,
            missing=tuple(self.missing),
            message=(
                f"{describe_intent(intent, self.device.display_name, self.command.payload)} "
                f"is hazardous and waits for safety approval (event {str(self.event.id)[:8]}): "
                f"still missing {missing}. Nothing was sent to the device."
            ),
            zone=self.requirements.zone,
            hazard_level=self.requirements.hazard_level,
            policies=self.requirements.policies,
        )


def held(
    session: Session,
    command: DeviceCommand,
    event: SafetyEvent,
    now: datetime,
    context: workflow.SafetyContext,
) -> HeldCommand:
    device = session.get(Device, command.device_id)
    assert device is not None  # a command's device is never deleted, only retired
    missing = workflow.missing(session, event, now, context.presence_ttl)
    return HeldCommand(
        command, event, device, missing, hazard_requirements(session, device, command.intent)
    )


def hazard_requirements(session: Session, device: Device, intent: str) -> HazardRequirements:
    """What a hazardous request needs before it may run: the zone's hazard level and every
    active policy governing the intent there (roles, dual confirmation, presence, PPE)."""
    zone = session.get(Zone, device.zone_id)
    policies = session.scalars(
        select(AccessPolicy).where(
            AccessPolicy.zone_id == device.zone_id,
            AccessPolicy.retired_at.is_(None),
            AccessPolicy.intents.contains([intent]),
        )
    ).all()
    hazard = zone.hazard_level if zone is not None else None
    return HazardRequirements(
        zone=zone.name if zone else None,
        hazard_level=hazard.value if hazard else None,
        policies=tuple(
            HazardPolicy(
                name=p.name,
                required_roles=tuple(r.value for r in p.required_roles),
                requires_dual_confirm=(
                    effective_dual_confirm(hazard, p.requires_dual_confirm) if hazard else True
                ),
                requires_presence=p.requires_presence,
                ppe=tuple(str(i) for i in (p.pqe_checks or {}).get("required", [])),
            )
            for p in policies
        ),
    )
