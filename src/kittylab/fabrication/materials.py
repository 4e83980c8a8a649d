"""Hazardous print materials on the write path (issue 13): a job's flag, and the zone
policy that must be met before it starts (``domain.materials`` holds the rules).

- ``flag`` (at creation, and again once the G-code names its filament): the job's
  ``JobDetails.hazardous_materials`` (``{classes, materials}`` in its details) from the
  request's ``material`` and the G-code's ``filament_type``; absent for ordinary materials.
- ``creation_refusal``: a request naming a hazardous material in a zone whose policy asks
  for PPE must confirm it (``ppeConfirmed``), or it is refused at once, naming the field.
- ``start_refusal``: before the print starts, the zone's fume extraction must be on (a
  device of the zone declared with ``attributes: {role: fume_extraction}``, whose last
  state says ``on``) and the PPE confirmed; otherwise the job waits in the queue with the
  reason (``JobDetails.waiting_for``) and the queue looks again every minute.
"""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import AccessPolicy, Device, Zone
from kittylab.devices import telemetry
from kittylab.domain import materials
from kittylab.domain.errors import ValidationFailed
from kittylab.fabrication.job_details import JobDetails

FUME_EXTRACTION_ROLE = "fume_extraction"
"""The ``attributes.role`` that declares a device as its zone's fume extraction."""


def flag(details: JobDetails) -> JobDetails:
    """``details`` with its hazardous-materials flag recomputed from what it names."""
    return replace(details, hazardous_materials=hazard_of(details))


def hazard_of(details: JobDetails) -> materials.MaterialHazard | None:
    return materials.classify([details.material, details.filament_type])


def zone_rules(session: Session, zone_id: UUID) -> list[materials.MaterialRule]:
    """The zone's active policies' rules for hazardous materials."""
    checks = session.scalars(
        select(AccessPolicy.pqe_checks).where(
            AccessPolicy.zone_id == zone_id, AccessPolicy.retired_at.is_(None)
        )
    )
    return [r for c in checks if (r := materials.rule_from_checks(c)) is not None]


def creation_refusal(
    session: Session, printer: Device, details: JobDetails
) -> ValidationFailed | None:
    """A request for a hazardous material that does not confirm the zone's PPE."""
    hazard = hazard_of(details)
    if hazard is None:
        return None
    needed = sorted(
        {item for r in zone_rules(session, printer.zone_id) for item in r.ppe}
        - set(details.ppe_confirmed)
    )
    if not needed:
        return None
    zone = session.get(Zone, printer.zone_id)
    return ValidationFailed(
        "ppeConfirmed",
        f"{', '.join(hazard.materials)} in {zone.name if zone else 'this zone'} needs PPE "
        f"confirmed: {', '.join(needed)}",
    )


def start_refusal(session: Session, printer: Device, details: JobDetails) -> str | None:
    """Why the job may not start on ``printer`` now (see the module doc), or None."""
    hazard = hazard_of(details)
    if hazard is None:
        return None
    rules = zone_rules(session, printer.zone_id)
    if not rules:
        return None
    zone = session.get(Zone, printer.zone_id)
    extraction = [
        (device.external_id, _is_on(session, device))
        for device in session.scalars(
            select(Device).where(
                Device.zone_id == printer.zone_id,
                Device.retired_at.is_(None),
                Device.attributes["role"].astext == FUME_EXTRACTION_ROLE,
            )
        )
    ]
    return materials.start_refusal(
        hazard,
        rules,
        zone=zone.name if zone else str(printer.zone_id),
        extraction=extraction,
        ppe_confirmed=list(details.ppe_confirmed),
    )


def _is_on(session: Session, device: Device) -> bool:
    latest = telemetry.latest_state(session, device.id)
    return latest is not None and latest.payload.get("on") is True
