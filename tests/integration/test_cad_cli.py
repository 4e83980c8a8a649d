"""``kittylab cad generate`` on PostgreSQL with the real CadQuery worker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kittylab.cli.main import app


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures logging onto the runner's captured stream, which is closed
    afterwards: later log lines of other tests must not go there."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cad_generate_offline_writes_step_and_stl_and_prints_the_table(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", database_url)
    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KITTYLAB_LOG_JSON", "false")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["cad", "generate", "a 40 mm cube with 2 mm fillets", "--offline", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "cadquery-part.step").read_bytes().startswith(b"ISO-10303-21")
    assert (out / "cadquery-part.stl").stat().st_size > 0
    assert (out / "cadquery-preview.png").read_bytes().startswith(b"\x89PNG")
    assert "40 x 40 x 40" in result.stdout
    assert "1.00" in result.stdout


def test_cad_generate_refuses_an_impossible_part_with_exit_1(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", database_url)
    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["cad", "generate", "a plate 10 m long", "--offline"])
    assert result.exit_code == 1
    assert "spec.length" in result.output


def test_cad_providers_lists_every_provider_with_its_availability(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", database_url)
    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["cad", "providers"])
    assert result.exit_code == 0, result.output
    for name in ("zoo", "tripo", "cadquery", "freecad", "triposr", "instantmesh"):
        assert name in result.stdout
    assert "no Zoo API token is configured" in result.stdout
