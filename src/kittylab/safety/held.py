"""What the lab says about a command held for approval, and to whom.

One shape for every way a command is asked for: ``POST /api/device/{id}/command`` and
``POST /api/query`` both answer a held command with the same ``pendingHazard`` object
(``HeldCommand.pending_hazard``), and both announce it on ``kitty/safety/<eventId>``
once the request commits (``workflow.announce``), as its later decision is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Device, DeviceCommand, SafetyEvent, Zone
from kittylab.domain.devices import describe_intent
from kittylab.domain.zones import effective_dual_confirm
from kittylab.safety import workflow


@dataclass(frozen=True)
class HeldCommand:
    """A command waiting for its safety event's approvals."""

    command: DeviceCommand
    event: SafetyEvent
    device: Device
    missing: list[str]
    """What the event still needs, in words (``workflow.view``)."""
    requirements: dict[str, Any]
    """The zone's hazard level and the policies governing the intent there."""

    def pending_hazard(self) -> dict[str, Any]:
        """The ``pendingHazard`` object both routes answer with."""
        intent = self.command.intent
        missing = "; ".join(self.missing) or "nothing"
        return {
            "intent": intent,
            "deviceId": str(self.device.id),
            "device": self.device.external_id,
            "eventId": str(self.event.id),
            "commandId": str(self.command.id),
            "status": "awaiting_confirmation",
            "missing": self.missing,
            "message": (
                f"{describe_intent(intent, self.device.display_name, self.command.payload)} "
                f"is hazardous and waits for safety approval (event {str(self.event.id)[:8]}): "
                f"still missing {missing}. Nothing was sent to the device."
            ),
            **self.requirements,
        }


def held(
    session: Session,
    command: DeviceCommand,
    event: SafetyEvent,
    now: datetime,
    context: workflow.SafetyContext,
) -> HeldCommand:
    device = session.get(Device, command.device_id)
    assert device is not None  # a command's device is never deleted, only retired
    missing: list[str] = workflow.view(session, event, now, context.presence_ttl)["missing"]
    return HeldCommand(
        command, event, device, missing, hazard_requirements(session, device, command.intent)
    )


def hazard_requirements(session: Session, device: Device, intent: str) -> dict[str, Any]:
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
    return {
        "zone": zone.name if zone else None,
        "hazardLevel": hazard.value if hazard else None,
        "policies": [
            {
                "name": p.name,
                "requiredRoles": [r.value for r in p.required_roles],
                "requiresDualConfirm": (
                    effective_dual_confirm(hazard, p.requires_dual_confirm) if hazard else True
                ),
                "requiresPresence": p.requires_presence,
                "ppe": list((p.pqe_checks or {}).get("required", [])),
            }
            for p in policies
        ],
    }
