"""Hazardous print materials (issue 13; the data model: "hazardous materials flagged via
metadata" on a fabrication job).

A print job's material comes from the request (``material``: ``"ABS"``, ``"PA6-CF"``) and
from the filament profile its G-code was sliced with (PrusaSlicer's ``; filament_type =``
comment). ``classify`` names the hazards of those names, by class:

- ``styrene``: ABS, ASA, HIPS give off styrene and ultrafine particles while printing;
- ``nylon``: polyamides (PA, PA6, PA12 …) release caprolactam;
- ``fibre``: carbon- or glass-filled filaments (``-CF``, ``-GF``) shed fibres and wear
  nozzles into the air;
- ``resin``: photopolymer resins are skin sensitizers with volatile monomers.

What a zone does about them (its fume extraction on, PPE confirmed) is a zone policy's
``hazardous_materials`` rule (``MaterialRule``); ``start_refusal`` says why a job may not
start yet. Pure: no database, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CLASSES: Mapping[str, str] = {
    "ABS": "styrene",
    "ASA": "styrene",
    "HIPS": "styrene",
    "STYRENE": "styrene",
    "NYLON": "nylon",
    "PA": "nylon",
    "PA6": "nylon",
    "PA11": "nylon",
    "PA12": "nylon",
    "PA66": "nylon",
    "PAHT": "nylon",
    "POLYAMIDE": "nylon",
    "CF": "fibre",
    "GF": "fibre",
    "CARBON": "fibre",
    "GLASS": "fibre",
    "FIBRE": "fibre",
    "FIBER": "fibre",
    "RESIN": "resin",
    "PHOTOPOLYMER": "resin",
}
_ORDER = ("styrene", "nylon", "fibre", "resin")
POLICY_KEY = "hazardous_materials"
"""Where a zone policy's ``MaterialRule`` is kept in its ``pqe_checks`` (the manifest's
``hazardous_materials``)."""
_TOKEN = re.compile(r"[A-Z0-9]+")
MAX_MATERIAL_LENGTH = 64


@dataclass(frozen=True)
class MaterialHazard:
    """The hazard classes of a job's materials, and the names they came from."""

    classes: tuple[str, ...]
    materials: tuple[str, ...]

    def as_details(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "materials": list(self.materials)}


def classify(names: Iterable[str | None]) -> MaterialHazard | None:
    """The hazards of the material ``names`` (case and punctuation ignored: ``"pa6-cf"`` is
    nylon and fibre); ``None`` when none of them is hazardous (PLA, PETG, TPU)."""
    classes: set[str] = set()
    flagged: list[str] = []
    for name in names:
        if not name:
            continue
        found = {_CLASSES[t] for t in _TOKEN.findall(name.upper()) if t in _CLASSES}
        if found and name not in flagged:
            flagged.append(name)
        classes |= found
    if not classes:
        return None
    return MaterialHazard(tuple(c for c in _ORDER if c in classes), tuple(flagged))


@dataclass(frozen=True)
class MaterialRule:
    """A zone policy's rule for hazardous materials: before such a job starts in the zone,
    its fume extraction must be on, and/or these PPE items confirmed with the job."""

    fume_extraction: bool = False
    ppe: tuple[str, ...] = ()


def rule_from_checks(checks: Mapping[str, Any] | None) -> MaterialRule | None:
    """A policy's rule as stored in its ``pqe_checks`` (``POLICY_KEY``), or None."""
    rule = (checks or {}).get(POLICY_KEY)
    if not isinstance(rule, Mapping):
        return None
    return MaterialRule(
        fume_extraction=bool(rule.get("fume_extraction")),
        ppe=tuple(str(p) for p in rule.get("ppe") or ()),
    )


def start_refusal(
    hazard: MaterialHazard | None,
    rules: Sequence[MaterialRule],
    *,
    zone: str,
    extraction: Sequence[tuple[str, bool]],
    ppe_confirmed: Iterable[str],
) -> str | None:
    """Why a job with ``hazard`` may not start in ``zone`` now, or None.

    ``extraction``: the zone's fume extraction devices and whether each is on (their last
    state); ``ppe_confirmed``: what the job's requester confirmed wearing."""
    if hazard is None or not rules:
        return None
    what = f"{', '.join(hazard.materials)} ({', '.join(hazard.classes)})"
    if any(r.fume_extraction for r in rules):
        if not extraction:
            return (
                f"{what} needs fume extraction in {zone}, and no device there is declared "
                "with role: fume_extraction"
            )
        if not any(on for _, on in extraction):
            names = ", ".join(name for name, _ in extraction)
            return f"{what} needs the fume extraction of {zone} on ({names} is off)"
    needed = sorted({item for r in rules for item in r.ppe} - set(ppe_confirmed))
    if needed:
        return f"{what} in {zone} needs PPE confirmed with the job: {', '.join(needed)}"
    return None
