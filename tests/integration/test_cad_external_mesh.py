"""Local image-to-mesh runners (TripoSR, InstantMesh) invoked as configured commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kittylab.adapters.cad.external_mesh import ExternalMeshProvider
from kittylab.adapters.cad.worker import CadBuildFailed
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.domain.enums import ArtifactType, CADProvider
from kittylab.services.cad import ProviderRequest, ProviderUnavailable

RUNNER = Path(__file__).parents[1] / "data" / "contract" / "fake_mesh_runner.py"
COMMAND = f"{sys.executable} {RUNNER} {{image}} {{out}}"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _provider(tmp_path: Path, command: str | None = COMMAND) -> ExternalMeshProvider:
    store = FolderArtifactStore(tmp_path / "store")
    store.put_bytes("references/photo.png", PNG, content_type="image/png")
    store.put_bytes("references/bad.png", PNG + b"fail", content_type="image/png")
    return ExternalMeshProvider(CADProvider.TRIPOSR, command, store, timeout_seconds=30)


def test_the_runner_turns_the_reference_image_into_an_stl(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    output = _provider(tmp_path).generate(
        ProviderRequest("a bracket", None, ("references/photo.png",)), work
    )
    import trimesh

    mesh = trimesh.load(str(output.files[ArtifactType.STL]), force="mesh")
    assert sorted(mesh.extents) == pytest.approx([10, 20, 30])
    assert output.metadata["triposr"]["image"] == "references/photo.png"


def test_a_failing_runner_is_a_build_failure_with_its_last_words(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(CadBuildFailed, match="runner failed on this image"):
        _provider(tmp_path).generate(ProviderRequest("x", None, ("references/bad.png",)), work)


def test_unconfigured_or_missing_runners_are_reported_unavailable(tmp_path: Path) -> None:
    assert _provider(tmp_path, None).unavailable_reason() == "no triposr command is configured"
    missing = _provider(tmp_path, "no-such-triposr {image} {out}")
    assert missing.unavailable_reason() == "no-such-triposr is not installed"
    with pytest.raises(ProviderUnavailable):
        missing.generate(ProviderRequest("x", None, ("references/photo.png",)), tmp_path)


def test_references_cannot_name_paths_outside_the_store(tmp_path: Path) -> None:
    from kittylab.domain.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        _provider(tmp_path).generate(ProviderRequest("x", None, ("../../etc/x.png",)), tmp_path)
