"""``ArtifactAnalyzer`` on trimesh + manifold3d (scores) and the numpy/Pillow renderer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kittylab.adapters.cad.preview import render_png
from kittylab.adapters.cad.quality import load_mesh, score_mesh
from kittylab.services.cad import Quality


class MeshAnalyzer:
    def __init__(self, bed_mm: Sequence[float], nozzle_mm: float = 0.4) -> None:
        self.bed_mm = tuple(bed_mm)
        self.nozzle_mm = nozzle_mm

    def score(
        self,
        mesh: Path,
        *,
        expected_bbox: Sequence[float] | None,
        solid_valid: bool | None,
        parametric: bool,
        min_wall_mm: float | None,
    ) -> Quality:
        report = score_mesh(
            mesh,
            expected_bbox=expected_bbox,
            solid_valid=solid_valid,
            parametric=parametric,
            bed_mm=self.bed_mm,
            min_wall_mm=min_wall_mm,
            nozzle_mm=self.nozzle_mm,
        )
        return Quality(report.score, report.breakdown, report.bbox)

    def preview(self, mesh: Path) -> bytes:
        return render_png(load_mesh(mesh))
