"""``ArtifactAnalyzer`` on trimesh + manifold3d (scores), the numpy/Pillow renderer, and the
CadQuery worker pool for checking STEP files that arrive without a validity verdict."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from kittylab.adapters.cad.preview import render_png
from kittylab.adapters.cad.quality import load_mesh, score_mesh
from kittylab.adapters.cad.worker import CadBuildFailed, CadWorkerPool
from kittylab.cad.ports import Quality, TargetBed
from kittylab.domain.errors import Busy

logger = logging.getLogger(__name__)


class MeshAnalyzer:
    def __init__(
        self,
        bed_mm: Sequence[float],
        nozzle_mm: float = 0.4,
        *,
        step_checker: CadWorkerPool | None = None,
    ) -> None:
        self.bed_mm = tuple(bed_mm)
        self.nozzle_mm = nozzle_mm
        self.step_checker = step_checker

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
        report = score_mesh(
            mesh,
            expected_bbox=expected_bbox,
            solid_valid=solid_valid,
            parametric=parametric,
            bed_mm=bed.mm if bed is not None else self.bed_mm,
            bed_source=bed.source if bed is not None else "settings (cad.bed_mm)",
            min_wall_mm=min_wall_mm,
            nozzle_mm=self.nozzle_mm,
        )
        return Quality(report.score, report.breakdown, report.bbox)

    def preview(self, mesh: Path) -> bytes:
        return render_png(load_mesh(mesh))

    def check_step(self, step: Path) -> bool | None:
        """OpenCascade's verdict on the STEP's solids, read in a confined CadQuery worker;
        None when no worker could check it now (busy, crashed, timed out)."""
        if self.step_checker is None:
            return None
        try:
            return self.step_checker.check_step(step).valid
        except (CadBuildFailed, Busy) as exc:
            logger.warning("STEP not checked: %s", exc)
            return None
