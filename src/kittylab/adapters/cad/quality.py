"""Quality score of a generated part (0..1) with its breakdown, from the mesh.

Components and weights:

- ``solid_valid`` (0.25): the B-rep kernel's validity check when the provider gave a solid;
  for mesh-only outputs, the mesh being a closed volume stands in;
- ``mesh`` (0.25): watertight (trimesh) and accepted by manifold3d as a manifold;
- ``bounding_box`` (0.20): extents against the requested ones (sorted, so an output laid
  on another side still matches); 1 within 0.1 mm, falling to 0 at 5 % off;
- ``printability`` (0.20): fits the target printer's bed in some orientation, the share
  of overhanging downward area (steeper than 45° and not on the bed) and the thinnest wall
  against two nozzle widths — the wall the specification names, or, when it names none
  (or there is no specification), the thinnest wall measured on the mesh
  (``measure_min_wall``);
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
WALL_SAMPLES = 256
"""Surface points whose inward ray measures the wall: about 0.15 s per 5,000 triangles."""
_RAY_BATCH_CELLS = 500_000
"""Rays x triangles tested at once: bounds the temporary arrays to some tens of MB."""
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


def measure_min_wall(mesh: trimesh.Trimesh, samples: int = WALL_SAMPLES) -> float | None:
    """The thinnest wall found by ray casting: from ``samples`` points spread over the
    surface by area (a fixed seed, so a mesh always measures the same), a ray goes inward
    along the face normal to the next surface it meets; the shortest such distance is the
    thinnest wall crossed. It measures material thickness perpendicular to the surface at
    those points, so a feature thinner than the sampling spacing (about
    sqrt(area / samples)) can be missed. None when no ray meets a surface (an open mesh).

    Plain numpy, no spatial index to install: each triangle's plane gives the distance
    along every ray, and three edge half-planes say whether the ray meets it inside; every
    quantity is a (rays x triangles) matrix product."""
    points, faces = trimesh.sample.sample_surface(mesh, samples, seed=0)
    normals = np.asarray(mesh.face_normals, dtype=np.float64)
    directions = -normals[faces]
    origins = np.asarray(points, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.float64)
    # Inward normals of each triangle's edges, in its plane: inside means >= 0 for all.
    edges = [
        (triangles[:, i], np.cross(normals, triangles[:, (i + 1) % 3] - triangles[:, i]))
        for i in range(3)
    ]
    plane = np.einsum("fk,fk->f", normals, triangles[:, 0])
    slack = 1e-9 * float(max(mesh.extents)) ** 2
    shortest = 1e-5 * float(max(mesh.extents))
    nearest = np.full(len(origins), np.inf)
    batch = max(1, _RAY_BATCH_CELLS // max(1, len(triangles)))
    for start in range(0, len(origins), batch):
        o = origins[start : start + batch]
        d = directions[start : start + batch]
        facing = d @ normals.T
        # Rays parallel to a plane give inf or nan here; both compare False below.
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (plane[None] - o @ normals.T) / facing
            hit = (np.abs(facing) > 1e-12) & (t > shortest)
            for vertex, inward in edges:
                offset = np.einsum("fk,fk->f", vertex, inward)
                hit &= (o @ inward.T) + t * (d @ inward.T) - offset[None] >= -slack
        nearest[start : start + batch] = np.where(hit, t, np.inf).min(axis=1)
    finite = nearest[np.isfinite(nearest)]
    return float(finite.min()) if finite.size else None


def score_mesh(
    path: Path,
    *,
    expected_bbox: Sequence[float] | None,
    solid_valid: bool | None,
    parametric: bool,
    bed_mm: Sequence[float],
    min_wall_mm: float | None = None,
    nozzle_mm: float = 0.4,
    bed_source: str = "settings",
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
    wall_source = "spec"
    if min_wall_mm is None:
        wall_source = f"measured: inward rays from {WALL_SAMPLES} surface points"
        measured = measure_min_wall(mesh)
        min_wall_mm = round(measured, 4) if measured is not None else None
    wall_ok: bool | None = None
    if min_wall_mm is not None:
        wall_ok = min_wall_mm >= 2 * nozzle_mm
        printable = printable * (1.0 if wall_ok else 0.5)
    parts["printability"] = printable
    breakdown["printability"] = {
        "fits_bed": fits,
        "bed_mm": list(bed_mm),
        "bed_source": bed_source,
        "overhang_share": round(overhang, 4),
        "min_wall_mm": min_wall_mm,
        "min_wall_source": wall_source if min_wall_mm is not None else None,
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
