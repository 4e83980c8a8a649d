"""Local image-to-mesh runners (TripoSR, InstantMesh) invoked as configured commands.

The command is a template with ``{image}`` (the input picture) and ``{out}`` (an empty
folder for the result), e.g. ``python run.py {image} --output-dir {out}``. It is split
like a shell would (``shlex``) but run without a shell, confined like FreeCAD
(``sandbox.run``: its own network namespace — a model must already be on disk —,
an address-space cap, a CPU-time cap of the timeout times the CPU count, its process group
killed past the timeout) and with a clean environment (``PATH``, ``HOME`` and ``TMPDIR``
in the job's work folder, ``LANG``, ``LC_ALL``; never KittyLab's secrets). The first mesh
it leaves in ``{out}`` (``.obj``, ``.glb``, ``.ply`` or ``.stl``, searched recursively) is
converted to STL. The image comes from the request's references, which must be keys in
the artifact store (``references/part-photo.png``): callers never name server paths.
Unconfigured or not installed, the provider reports itself unavailable.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import trimesh

from kittylab.adapters import sandbox
from kittylab.adapters.cad.worker import CadBuildFailed
from kittylab.cad.errors import ProviderUnavailable
from kittylab.cad.ports import ProviderOutput, ProviderRequest, image_references
from kittylab.domain.enums import ArtifactType, CADProvider
from kittylab.records.ports import ArtifactMissing, ArtifactStore, validate_key

_MESH_SUFFIXES = (".obj", ".glb", ".ply", ".stl")


class ExternalMeshProvider:
    offline = True

    def __init__(
        self,
        name: CADProvider,
        command: str | None,
        store: ArtifactStore,
        *,
        timeout_seconds: float = 600.0,
        memory_bytes: int = 16 * 1024**3,
    ) -> None:
        self.name = name
        self.command = command
        self.store = store
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        """Address-space cap; 0 leaves it uncapped (CUDA maps far more than it uses)."""

    def unavailable_reason(self) -> str | None:
        if not self.command:
            return f"no {self.name.value} command is configured"
        try:
            executable = shlex.split(self.command)[0]
        except (ValueError, IndexError):
            return f"the {self.name.value} command cannot be parsed"
        if shutil.which(executable) is None:
            return f"{executable} is not installed"
        return None

    def needs_spec(self) -> bool:
        return False

    def needs_image(self) -> bool:
        return True

    def generate(self, request: ProviderRequest, work_dir: Path) -> ProviderOutput:
        reason = self.unavailable_reason()
        if reason is not None or self.command is None:
            raise ProviderUnavailable(reason or "not configured")
        images = image_references(request.references)
        if not images:
            raise ProviderUnavailable(f"{self.name.value} needs an image reference")
        key = validate_key(images[0])
        image = work_dir / f"input{Path(key).suffix.lower()}"
        try:
            self.store.download_to(key, image)
        except ArtifactMissing as exc:
            raise CadBuildFailed(f"no reference image is stored under {key}") from exc
        out = work_dir / "out"
        out.mkdir()
        argv = [part.format(image=str(image), out=str(out)) for part in shlex.split(self.command)]
        executable = shutil.which(argv[0])
        if executable is None:
            raise ProviderUnavailable(f"{argv[0]} is not installed")
        try:
            done = sandbox.run(
                [executable, *argv[1:]],
                limits=sandbox.Limits(
                    memory_bytes=self.memory_bytes,
                    # CPU time across every thread, so a runner using all cores may use them
                    # for the whole of its wall-clock allowance.
                    cpu_seconds=int(self.timeout_seconds * (os.cpu_count() or 1)) + 1,
                ),
                timeout_seconds=self.timeout_seconds,
                env=sandbox.clean_environment(work_dir),
                cwd=work_dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise CadBuildFailed(
                f"{self.name.value} ran past {self.timeout_seconds:g} s and was stopped"
            ) from exc
        except OSError as exc:
            raise ProviderUnavailable(f"cannot start {self.name.value}: {exc}") from exc
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise CadBuildFailed(f"{self.name.value} exited {done.returncode}: {tail[0][:200]}")
        mesh_file = next(
            (p for p in sorted(out.rglob("*")) if p.suffix.lower() in _MESH_SUFFIXES), None
        )
        if mesh_file is None:
            raise CadBuildFailed(f"{self.name.value} wrote no mesh")
        stl = work_dir / "part.stl"
        try:
            trimesh.load(str(mesh_file), force="mesh").export(str(stl))  # type: ignore[no-untyped-call]
        except Exception as exc:  # trimesh raises many types for a bad file
            raise CadBuildFailed(f"{self.name.value} wrote an unreadable mesh") from exc
        return ProviderOutput(
            files={ArtifactType.STL: stl},
            model_version=f"{self.name.value} (local command)",
            solid_valid=None,
            parametric=False,
            metadata={self.name.value: {"image": key, "output": mesh_file.name}},
        )
