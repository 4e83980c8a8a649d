"""Which providers a CAD job tries, in which order, and the bed its fit is scored against.

``plan`` answers for a policy (``offline``: offline providers only; ``online``: online ones;
``auto``: online first, then offline), what the prompt gives (a part specification, a
reference image) and, when the request names providers, exactly those. Nothing is recorded
here: ``runs`` stores the plan on the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device
from kittylab.cad.job_details import TargetPrinter
from kittylab.cad.ports import BuildVolumes, CadProviderPort
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import Conflict, InfrastructureError, NotFound, ValidationFailed


class PolicyMode(StrEnum):
    """What the caller asks for; ``auto`` is stored as ``online`` with the request noted."""

    ONLINE = "online"
    OFFLINE = "offline"
    AUTO = "auto"


@dataclass(frozen=True)
class ProviderStatus:
    provider: str
    offline: bool
    available: bool
    reason: str | None
    """Why it is unavailable, if it is."""


def provider_status(providers: Sequence[CadProviderPort]) -> list[ProviderStatus]:
    """Every provider with whether it is offline and why it is unavailable, if it is."""
    statuses = []
    for p in providers:
        reason = p.unavailable_reason()
        statuses.append(ProviderStatus(p.name.value, p.offline, reason is None, reason))
    return statuses


def plan(
    providers: Sequence[CadProviderPort],
    mode: PolicyMode,
    *,
    have_spec: bool,
    have_image: bool = False,
    only: Sequence[str] = (),
) -> list[CadProviderPort]:
    """Providers to try, in order. ``Conflict`` (field ``policyMode``) when none can;
    with ``only`` (provider names), exactly those in that order, ``Conflict`` (field
    ``providers``) naming any the policy cannot use now."""
    if only:
        return _plan_only(providers, mode, only, have_spec=have_spec, have_image=have_image)
    usable = [
        p
        for p in providers
        if p.unavailable_reason() is None
        and (have_spec or not p.needs_spec())
        and (have_image or not p.needs_image())
    ]
    online = [p for p in usable if not p.offline]
    offline = [p for p in usable if p.offline]
    chosen = {
        PolicyMode.OFFLINE: offline,
        PolicyMode.ONLINE: online,
        PolicyMode.AUTO: online + offline,
    }[mode]
    if not chosen:
        what = {"offline": "offline", "online": "online", "auto": ""}[mode.value]
        reasons = "; ".join(
            f"{p.name.value}: {p.unavailable_reason()}"
            for p in providers
            if (mode is PolicyMode.AUTO or p.offline == (mode is PolicyMode.OFFLINE))
            and p.unavailable_reason() is not None
        )
        raise Conflict(
            f"no {what + ' ' if what else ''}CAD provider is available for this prompt"
            + (f" ({reasons})" if reasons else ""),
            field="policyMode",
        )
    return chosen


def _plan_only(
    providers: Sequence[CadProviderPort],
    mode: PolicyMode,
    names: Sequence[str],
    *,
    have_spec: bool,
    have_image: bool,
) -> list[CadProviderPort]:
    chosen: list[CadProviderPort] = []
    for name in dict.fromkeys(names):  # in the caller's order, each once
        provider = next((p for p in providers if p.name.value == name), None)
        if provider is None:
            why = "is not a provider of this lab"
        elif mode is PolicyMode.OFFLINE and not provider.offline:
            why = "is online, and the policy is offline"
        elif mode is PolicyMode.ONLINE and provider.offline:
            why = "is offline, and the policy is online"
        elif (reason := provider.unavailable_reason()) is not None:
            why = f"is unavailable: {reason}"
        elif provider.needs_spec() and not have_spec:
            why = "builds from the part library, which cannot read this prompt"
        elif provider.needs_image() and not have_image:
            why = "needs a reference image"
        else:
            chosen.append(provider)
            continue
        raise Conflict(f"{name} {why}", field="providers")
    return chosen


def target_printer(
    session: Session, printer_id: UUID, build_volumes: BuildVolumes | None
) -> TargetPrinter:
    """The printer's bed for the fit check: its ``bed_mm`` attribute ([x, y, z] mm),
    else its slicer profile's build volume, else the configured default (the analyzer
    uses it when ``bed_mm`` is None). ``NotFound`` for an unknown device,
    ``ValidationFailed`` (field ``printerId``) for one that is not a printer or states
    a malformed bed."""
    device = session.get(Device, printer_id)
    if device is None:
        raise NotFound("printer", printer_id)
    if device.kind is not DeviceKind.PRINTER:
        raise ValidationFailed("printerId", f"{device.display_name} is not a printer")
    attributes = device.attributes or {}
    stated = attributes.get("bed_mm")
    profile = attributes.get("slicer_profile")
    if stated is not None:
        if not (
            isinstance(stated, list)
            and len(stated) == 3
            and all(isinstance(v, int | float) and 0 < v <= 10_000 for v in stated)
        ):
            raise ValidationFailed(
                "printerId",
                f"{device.display_name}'s bed_mm attribute must be [x, y, z] in mm",
            )
        x, y, z = (float(v) for v in stated)
        return TargetPrinter(device.id, device.display_name, (x, y, z), "printer bed_mm")
    if isinstance(profile, str) and build_volumes is not None:
        try:
            volume = build_volumes.build_volume(profile)
        except (ValidationFailed, InfrastructureError) as exc:
            # A scoring aid, not a gate: score against the default and say why.
            why = f"settings (profile {profile}: {exc})"
            return TargetPrinter(device.id, device.display_name, None, why)
        bed = (volume.x, volume.y, volume.z)
        return TargetPrinter(device.id, device.display_name, bed, f"slicer profile {profile}")
    why = "settings (the printer states no bed)"
    return TargetPrinter(device.id, device.display_name, None, why)
