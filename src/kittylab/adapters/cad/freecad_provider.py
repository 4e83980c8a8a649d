"""The second offline provider: the part library built by FreeCAD (``freecadcmd``).

Each job runs ``freecadcmd`` on ``freecad_build.py`` in a fresh process, confined by
``sandbox.run`` (own network namespace — refused where namespaces are not available —,
``RLIMIT_AS``, ``RLIMIT_CPU``, its process group killed past its timeout).
Only the specification crosses in, as JSON. Reported unavailable when ``freecadcmd`` is
not installed (Debian package ``freecad``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kittylab
from kittylab.adapters import sandbox
from kittylab.adapters.cad.worker import CadBuildFailed, CadBuildTimeout, WorkerLimits
from kittylab.cad.errors import ProviderUnavailable
from kittylab.cad.ports import ProviderOutput, ProviderRequest
from kittylab.domain.enums import ArtifactType, CADProvider
from kittylab.domain.errors import ValidationFailed

SCRIPT = Path(__file__).with_name("freecad_build.py")
SOURCE_ROOT = Path(kittylab.__file__).resolve().parents[1]


class FreeCadProvider:
    name = CADProvider.FREECAD
    offline = True

    def __init__(self, command: str = "freecadcmd", limits: WorkerLimits | None = None) -> None:
        self.command = command
        self.limits = limits or WorkerLimits()

    def unavailable_reason(self) -> str | None:
        if shutil.which(self.command) is None:
            return f"{self.command} is not installed (Debian package freecad)"
        return None

    def needs_spec(self) -> bool:
        return True

    def needs_image(self) -> bool:
        return False

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        executable = shutil.which(self.command)
        if executable is None:
            raise ProviderUnavailable(f"{self.command} is not installed")
        if request.spec is None:
            raise ValidationFailed("prompt", "the part library needs a part specification")
        out_dir = work_dir / "freecad"
        out_dir.mkdir()
        request_file = work_dir / "freecad-request.json"
        request_file.write_text(
            json.dumps(
                {"spec": request.spec.to_json(), "out_dir": str(out_dir), "src": str(SOURCE_ROOT)}
            )
        )
        env = sandbox.clean_environment(work_dir, {"KITTYLAB_FREECAD_REQUEST": str(request_file)})
        try:
            done = sandbox.run(
                [executable, "-c", f"exec(open({str(SCRIPT)!r}).read())"],
                limits=sandbox.Limits(
                    memory_bytes=self.limits.memory_bytes,
                    cpu_seconds=int(self.limits.cpu_seconds) + 1,
                ),
                timeout_seconds=self.limits.timeout_seconds,
                env=env,
                cwd=work_dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise CadBuildTimeout(
                f"freecad ran past {self.limits.timeout_seconds:g} s and was stopped"
            ) from exc
        except sandbox.SandboxError as exc:
            raise CadBuildFailed(f"freecad was not started: {exc}") from exc
        result_file = out_dir / "result.json"
        if not result_file.is_file():
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise CadBuildFailed(f"freecad exited {done.returncode}: {tail[0][:200]}")
        result = json.loads(result_file.read_text())
        if not result.get("ok"):
            raise CadBuildFailed(f"freecad could not build the part: {result.get('error')}")
        return ProviderOutput(
            files={ArtifactType.STEP: Path(result["step"]), ArtifactType.STL: Path(result["stl"])},
            model_version=f"freecad {result.get('version', '?')} / kittylab part library 1",
            solid_valid=bool(result["valid"]),
            parametric=True,
            metadata={
                "build": {
                    "brep_bbox_mm": result["bbox"],
                    "volume_mm3": result["volume"],
                    "solids": result["solids"],
                }
            },
        )
