"""Quality score of a generated part (0..1) with its breakdown, from the mesh.

Components and weights:

- ``solid_valid`` (0.25): the B-rep kernel's validity check when the provider gave a solid;
  for mesh-only outputs, the mesh being a closed volume stands in;
- ``mesh`` (0.25): watertight (trimesh) and accepted by manifold3d as a manifold;
- ``bounding_box`` (0.20): extents against the requested ones (sorted, so an output laid
  on another side still matches); 1 within 0.1 mm, falling to 0 at 5 % off;
- ``printability`` (0.20): fits the printer's bed in some orientation, the share of
  overhanging downward area (steeper than 45° and not on the bed) and the thinnest wall
  named by the specification against two nozzle widths;
- ``parametric`` (0.10): 1 for a B-rep (STEP) source, 0.5 for a mesh only.

Components that cannot be judged (no requested size) are left out and the weights of the
rest rescaled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import manifold3d
import numpy as np
import trimesh

from kittylab.domain.errors import ValidationFailed

BBOX_TOLERANCE_MM = 0.1
OVERHANG_DEGREES = 45.0
_WEIGHTS = {
    "solid_valid": 0.25,
    "mesh": 0.25,
    "bounding_box": 0.20,
    "printability": 0.20,
    "parametric": 0.10,
}


@dataclass(frozen=True)
class QualityReport:
    score: float
    breakdown: dict[str, Any]
    bbox: tuple[float, float, float]
    watertight: bool
    manifold: bool
    triangles: int


def load_mesh(path: Path) -> trimesh.Trimesh:
    """The mesh in an STL/OBJ/GLB file, merged into one; ``ValidationFailed`` (field
    ``artifact``) when it holds no triangles."""
    try:
        loaded = trimesh.load(str(path), force="mesh")
    except Exception as exc:  # trimesh raises a zoo of types for bad files
        raise ValidationFailed("artifact", f"is not a readable mesh: {type(exc).__name__}") from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValidationFailed("artifact", "holds no triangles")
    return loaded


def _is_manifold(mesh: trimesh.Trimesh) -> bool:
    try:
        solid = manifold3d.Manifold(
            manifold3d.Mesh(
                vert_properties=np.asarray(mesh.vertices, dtype=np.float32),
                tri_verts=np.asarray(mesh.faces, dtype=np.uint32),
            )
        )
    except Exception:
        return False
    return bool(solid.status() == manifold3d.Error.NoError) and not solid.is_empty()


def _overhang_share(mesh: trimesh.Trimesh) -> float:
    normals = mesh.face_normals
    areas = mesh.area_faces
    z_min = float(mesh.bounds[0][2])
    on_bed = np.all(np.abs(mesh.triangles[:, :, 2] - z_min) < 1e-3, axis=1)
    limit = -np.cos(np.radians(OVERHANG_DEGREES))
    overhang = (normals[:, 2] < limit) & ~on_bed
    total = float(areas.sum())
    return float(areas[overhang].sum() / total) if total > 0 else 1.0


def score_mesh(
    path: Path,
    *,
    expected_bbox: Sequence[float] | None,
    solid_valid: bool | None,
    parametric: bool,
    bed_mm: Sequence[float],
    min_wall_mm: float | None = None,
    nozzle_mm: float = 0.4,
) -> QualityReport:
    mesh = load_mesh(path)
    extents = tuple(float(v) for v in mesh.extents)
    bbox = (extents[0], extents[1], extents[2])
    watertight = bool(mesh.is_watertight)
    manifold = _is_manifold(mesh)
    parts: dict[str, float] = {}
    breakdown: dict[str, Any] = {}

    closed = watertight and manifold
    parts["solid_valid"] = float(solid_valid if solid_valid is not None else closed)
    breakdown["solid_valid"] = {
        "value": solid_valid,
        "source": "brep" if solid_valid is not None else "mesh",
    }
    parts["mesh"] = (0.5 if watertight else 0.0) + (0.5 if manifold else 0.0)
    breakdown["mesh"] = {"watertight": watertight, "manifold": manifold}

    if expected_bbox is not None:
        want = sorted(float(v) for v in expected_bbox)
        have = sorted(bbox)
        deviation = max(abs(a - b) for a, b in zip(want, have, strict=True))
        allowed = 0.05 * max(want)
        within = deviation <= BBOX_TOLERANCE_MM
        parts["bounding_box"] = 1.0 if within else max(0.0, 1.0 - deviation / allowed)
        breakdown["bounding_box"] = {
            "expected_mm": [round(v, 4) for v in expected_bbox],
            "actual_mm": [round(v, 4) for v in bbox],
            "max_deviation_mm": round(deviation, 4),
            "within_tolerance": within,
        }

    fits = all(a <= b for a, b in zip(sorted(bbox), sorted(float(v) for v in bed_mm), strict=True))
    overhang = _overhang_share(mesh)
    printable = 0.5 * float(fits) + 0.5 * (1.0 - overhang)
    wall_ok: bool | None = None
    if min_wall_mm is not None:
        wall_ok = min_wall_mm >= 2 * nozzle_mm
        printable = printable * (1.0 if wall_ok else 0.5)
    parts["printability"] = printable
    breakdown["printability"] = {
        "fits_bed": fits,
        "bed_mm": list(bed_mm),
        "overhang_share": round(overhang, 4),
        "min_wall_mm": min_wall_mm,
        "min_wall_ok": wall_ok,
    }
    parts["parametric"] = 1.0 if parametric else 0.5
    breakdown["parametric"] = parametric

    weight = sum(_WEIGHTS[name] for name in parts)
    score = sum(_WEIGHTS[name] * value for name, value in parts.items()) / weight
    breakdown["components"] = {name: round(value, 4) for name, value in parts.items()}
    breakdown["weights"] = {name: _WEIGHTS[name] for name in parts}
    return QualityReport(
        score=round(min(1.0, max(0.0, score)), 4),
        breakdown=breakdown,
        bbox=bbox,
        watertight=watertight,
        manifold=manifold,
        triangles=len(mesh.faces),
    )
