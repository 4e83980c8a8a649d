"""The slicer port: a 3D model (STL, STEP, 3MF) in, G-code and its estimates out.

A slice is made for one *profile*: a printer (bed, build height, firmware flavour, machine
limits), a filament (diameter, density, temperatures) and a print setting (layer height,
walls, infill). Implementations keep their profiles as files
(``kittylab.adapters.slicer`` holds the PrusaSlicer ones).

Errors:

- :class:`UnsliceableModel` (a ``ValidationFailed`` on field ``model``): the input can never
  be sliced as it is: empty, an unsupported format, not a closed (manifold) mesh, larger than
  the printer's build volume, nothing to print, an archive refused as unsafe (a zip bomb, a
  member name that leaves the archive, a DTD), or content that is more than geometry
  (modifier volumes, a multi-file project). ``reason`` says which.
- ``ValidationFailed`` on ``profile``: an unknown printer, filament or print profile.
- :class:`SlicerError` (an ``InfrastructureError``): the slicer could not do its work (not
  installed, crashed, gave no estimates); :class:`SlicerTimeout` when it ran out of time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from kittylab.domain.errors import InfrastructureError, ValidationFailed


class ModelFormat(Enum):
    STL = "stl"
    STEP = "step"
    THREE_MF = "3mf"

    @classmethod
    def of(cls, path: Path) -> ModelFormat | None:
        """The format a file name says, or ``None`` for any other extension."""
        suffix = path.suffix.lower().lstrip(".")
        if suffix == "stp":
            suffix = "step"
        for member in cls:
            if member.value == suffix:
                return member
        return None


class Unsliceable(Enum):
    EMPTY = "empty"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNREADABLE = "unreadable"
    NOT_MANIFOLD = "not_manifold"
    TOO_LARGE = "too_large"
    NOTHING_TO_PRINT = "nothing_to_print"
    UNSAFE_ARCHIVE = "unsafe_archive"
    UNSUPPORTED_CONTENT = "unsupported_content"


class UnsliceableModel(ValidationFailed):
    """The model cannot be sliced as it is; ``reason`` names why, the message says how."""

    def __init__(self, reason: Unsliceable, message: str) -> None:
        super().__init__("model", message)
        self.reason = reason


class SlicerError(InfrastructureError):
    """The slicer could not run or gave output that cannot be read."""


class SlicerTimeout(SlicerError):
    """The slicer did not finish within its time limit (and was stopped)."""


@dataclass(frozen=True)
class SliceProfile:
    """Names of the three profile files a slice combines."""

    printer: str = "generic-220"
    filament: str = "pla"
    print: str = "0.20mm"

    def __str__(self) -> str:
        return f"{self.printer}/{self.filament}/{self.print}"


@dataclass(frozen=True)
class BuildVolume:
    """The printable space of a printer profile, in mm."""

    x: float
    y: float
    z: float


@dataclass(frozen=True)
class ModelSize:
    """A model's extent in mm — for several objects (a 3MF plate), the largest extent of
    any one object per axis, since each is placed on the bed on its own — and whether every
    mesh is closed."""

    x: float
    y: float
    z: float
    manifold: bool
    open_edges: int = 0
    objects: int = 1


@dataclass(frozen=True)
class SliceResult:
    """What slicing produced. Times are the slicer's own estimates in seconds;
    ``silent_mode_seconds`` is set for printers with a stealth mode (MK4-like)."""

    gcode_path: Path
    profile: SliceProfile
    model_format: ModelFormat
    model_size: ModelSize
    estimated_seconds: int
    silent_mode_seconds: int | None
    filament_mm: float
    filament_cm3: float
    filament_g: float
    gcode_bytes: int
    slicer_version: str

    def as_metadata(self) -> dict[str, object]:
        """JSON-ready facts for a job's ``metadata`` (the G-code path is the caller's)."""
        return {
            "slicer": self.slicer_version,
            "profile": {
                "printer": self.profile.printer,
                "filament": self.profile.filament,
                "print": self.profile.print,
            },
            "modelFormat": self.model_format.value,
            "modelSizeMm": [self.model_size.x, self.model_size.y, self.model_size.z],
            "estimatedSeconds": self.estimated_seconds,
            "silentModeSeconds": self.silent_mode_seconds,
            "filament": {"mm": self.filament_mm, "cm3": self.filament_cm3, "g": self.filament_g},
            "gcodeBytes": self.gcode_bytes,
        }


class Slicer(Protocol):
    def profiles(self) -> dict[str, list[str]]:
        """Available profile names by kind: ``{"printer": [...], "filament": [...],
        "print": [...]}``."""

    def build_volume(self, printer: str) -> BuildVolume:
        """The printable space of a printer profile; ``ValidationFailed`` on ``profile``
        for an unknown one."""

    def inspect(self, model: Path) -> ModelSize:
        """Measure a model without slicing it (``UnsliceableModel`` when it is empty,
        unreadable or of another format)."""

    def slice(self, model: Path, output: Path, *, profile: SliceProfile) -> SliceResult:
        """Slice ``model`` into G-code at ``output`` (replaced when present; never left
        half-written). Raises ``UnsliceableModel``, ``ValidationFailed`` (profile) or
        ``SlicerError``."""
