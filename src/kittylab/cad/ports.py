"""Ports of CAD generation: the providers that build parts, the analyzer that scores them,
the printers' build volumes, and the queues that run jobs and deliver alerts.

Providers and the analyzer live in ``kittylab.adapters.cad``; bootstrap wires them. A
provider raises ``ProviderUnavailable`` (``kittylab.cad.errors``) when it cannot be used,
``Busy`` when it has no room now, any other ``KittyLabError`` when it failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from kittylab.domain.cad_spec import PartSpec
from kittylab.domain.enums import ArtifactType, CADProvider
from kittylab.fabrication.ports import BuildVolume


@dataclass(frozen=True)
class ProviderRequest:
    prompt: str
    spec: PartSpec | None
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderOutput:
    """Files a provider produced (at least an STL or another mesh for scoring)."""

    files: Mapping[ArtifactType, Path]
    model_version: str
    solid_valid: bool | None = None
    parametric: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


class CadProviderPort(Protocol):
    name: CADProvider
    offline: bool

    def unavailable_reason(self) -> str | None:
        """None when usable now, else why not (shown to callers and recorded)."""

    def needs_spec(self) -> bool:
        """True when the provider builds from a part specification, not free text."""

    def needs_image(self) -> bool:
        """True when the provider works from a reference image (``image_references``)."""

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        """Produce the files in ``work_dir`` or raise (any ``KittyLabError``)."""


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def image_references(references: Sequence[str]) -> list[str]:
    """References naming a picture in the artifact store (not URLs, not server paths)."""
    return [r for r in references if r.lower().endswith(_IMAGE_SUFFIXES) and "://" not in r]


@dataclass(frozen=True)
class Quality:
    score: float
    breakdown: dict[str, Any]
    bbox: tuple[float, float, float]


@dataclass(frozen=True)
class TargetBed:
    """The build volume a part's fit is checked against, and where it came from."""

    mm: tuple[float, float, float]
    source: str


class ArtifactAnalyzer(Protocol):
    def score(
        self,
        mesh: Path,
        *,
        expected_bbox: Sequence[float] | None,
        solid_valid: bool | None,
        parametric: bool,
        min_wall_mm: float | None,
        bed: TargetBed | None = None,
    ) -> Quality:
        """Score the mesh; ``bed`` None: the configured default bed; ``min_wall_mm`` None:
        measured on the mesh."""

    def preview(self, mesh: Path) -> bytes: ...

    def check_step(self, step: Path) -> bool | None:
        """Whether every solid in the STEP file is valid; None when it cannot be checked."""


class BuildVolumes(Protocol):
    """Printer profiles' build volumes (the slicer's ``build_volume``)."""

    def build_volume(self, printer: str) -> BuildVolume: ...


class CadJobQueue(Protocol):
    def defer_cad_job(self, job_id: UUID) -> None: ...


class AlertQueue(Protocol):
    def defer_notification(self, notification_id: UUID, *, delay_seconds: float = 0) -> None: ...
