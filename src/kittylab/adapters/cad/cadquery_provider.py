"""The offline default provider: the CadQuery part library in the warm worker pool."""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from pathlib import Path

from kittylab.adapters.cad.worker import CadWorkerPool
from kittylab.cad.ports import ProviderOutput, ProviderRequest
from kittylab.domain.enums import ArtifactType, CADProvider
from kittylab.domain.errors import ValidationFailed


class CadQueryProvider:
    name = CADProvider.CADQUERY
    offline = True

    def __init__(self, pool: CadWorkerPool) -> None:
        self.pool = pool
        self._installed = importlib.util.find_spec("cadquery") is not None

    def unavailable_reason(self) -> str | None:
        return None if self._installed else "cadquery is not installed"

    def needs_spec(self) -> bool:
        return True

    def needs_image(self) -> bool:
        return False

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        if request.spec is None:
            raise ValidationFailed("prompt", "the part library needs a part specification")
        result = self.pool.build(request.spec, work_dir)
        return ProviderOutput(
            files={ArtifactType.STEP: result.step, ArtifactType.STL: result.stl},
            model_version=f"cadquery {version('cadquery')} / kittylab part library 1",
            solid_valid=result.valid,
            parametric=True,
            metadata={
                "build": {
                    "build_ms": result.build_ms,
                    "volume_mm3": result.volume,
                    "solids": result.solids,
                    "brep_bbox_mm": list(result.bbox),
                    "network_isolation": self.pool.network_isolation,
                }
            },
        )
