"""Local image-to-mesh runners (TripoSR, InstantMesh) invoked as configured commands."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from kittylab.adapters.cad.external_mesh import ExternalMeshProvider
from kittylab.adapters.cad.worker import CadBuildFailed
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.cad.errors import ProviderUnavailable
from kittylab.cad.ports import ProviderRequest
from kittylab.domain.enums import ArtifactType, CADProvider

RUNNER = Path(__file__).parents[1] / "data" / "contract" / "fake_mesh_runner.py"
COMMAND = f"{sys.executable} {RUNNER} {{image}} {{out}}"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _provider(
    tmp_path: Path, command: str | None = COMMAND, *, timeout_seconds: float = 30
) -> ExternalMeshProvider:
    store = FolderArtifactStore(tmp_path / "store")
    store.put_bytes("references/photo.png", PNG, content_type="image/png")
    store.put_bytes("references/bad.png", PNG + b"fail", content_type="image/png")
    store.put_bytes("references/hang.png", PNG + b"hang", content_type="image/png")
    return ExternalMeshProvider(
        CADProvider.TRIPOSR,
        command,
        store,
        timeout_seconds=timeout_seconds,
        memory_bytes=2 * 1024**3,
    )


def test_the_runner_is_confined_no_network_limited_memory_and_cpu_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITTYLAB_CAD__ZOO_API_TOKEN", "zoo-secret")
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", "postgresql://kittylab:secret@db/kittylab")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    provider = _provider(tmp_path)
    provider.store.put_bytes(
        "references/probe.png", PNG + f"probe:{port}".encode(), content_type="image/png"
    )
    work = tmp_path / "work"
    work.mkdir()
    try:
        provider.generate(ProviderRequest("x", None, ("references/probe.png",)), work)
    finally:
        listener.close()
    report = json.loads((work / "out" / "probe.json").read_text())
    assert report["network"] == "unreachable"
    assert report["memory"] == 2 * 1024**3
    assert 0 < report["cpu"] != -1
    assert not [name for name in report["environment"] if name.startswith("KITTYLAB")]


def test_a_runner_past_its_timeout_is_stopped_with_every_process_it_started(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(CadBuildFailed, match="ran past 3 s"):
        _provider(tmp_path, timeout_seconds=3).generate(
            ProviderRequest("x", None, ("references/hang.png",)), work
        )
    child = int((work / "out" / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the runner's own child was left running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child not yet reaped by its (also killed) parent is a zombie: gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


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
