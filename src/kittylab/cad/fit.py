"""Which of the lab's printers a part fits, by its bounding box against each printer's bed.

A part fits a bed when its extents, sorted, are each no larger than the bed's, sorted: it
may be laid on any side (the slicer can turn it), as the quality score's printability
check does. Each printer's bed is the one ``planning.target_printer`` finds (its
``bed_mm`` attribute, else its slicer profile's build volume), else the configured
default (``KITTYLAB_CAD__BED_MM``), and the answer says which it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.tables import Device
from kittylab.cad.planning import target_printer
from kittylab.cad.ports import BuildVolumes
from kittylab.domain.enums import DeviceKind
from kittylab.domain.errors import ValidationFailed

Extents = tuple[float, float, float]


@dataclass(frozen=True)
class PrinterFit:
    device_id: UUID
    name: str
    bed_mm: Extents
    bed_source: str
    fits: bool


def fits(extents: Sequence[float], bed: Sequence[float]) -> bool:
    """Whether a box of ``extents`` fits in ``bed`` laid on some side (both in mm)."""
    return all(a <= b for a, b in zip(sorted(extents), sorted(bed), strict=True))


@dataclass(frozen=True)
class Bed:
    device_id: UUID
    name: str
    bed_mm: Extents
    source: str


def printer_beds(
    session: Session, build_volumes: BuildVolumes | None, default_bed: Sequence[float]
) -> list[Bed]:
    """Every printer in service with its bed, by name."""
    printers = session.scalars(
        select(Device)
        .where(Device.kind == DeviceKind.PRINTER, Device.retired_at.is_(None))
        .order_by(Device.display_name)
    ).all()
    fallback = (float(default_bed[0]), float(default_bed[1]), float(default_bed[2]))
    beds = []
    for printer in printers:
        try:
            target = target_printer(session, printer.id, build_volumes)
        except ValidationFailed as exc:  # a malformed bed_mm: say so, use the default
            beds.append(Bed(printer.id, printer.display_name, fallback, f"settings ({exc})"))
            continue
        bed = target.bed_mm if target.bed_mm is not None else fallback
        beds.append(Bed(printer.id, printer.display_name, bed, str(target.bed_source)))
    return beds


def printers_fit(extents: Sequence[float], beds: Sequence[Bed]) -> list[PrinterFit]:
    """Each printer in ``beds`` with whether a part of ``extents`` fits it."""
    return [
        PrinterFit(bed.device_id, bed.name, bed.bed_mm, bed.source, fits(extents, bed.bed_mm))
        for bed in beds
    ]
