"""``kittylab cad generate`` on PostgreSQL with the real CadQuery worker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kittylab.cli.main import app


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


def test_cad_generate_says_how_an_ambiguous_prompt_was_read_and_iterate_builds_the_other(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", database_url)
    monkeypatch.setenv("KITTYLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KITTYLAB_LOG_JSON", "false")
    prompt = "phone stand 200 deep 60 wide 110 tall, 4 thick, at a 40 degree angle"
    result = CliRunner().invoke(app, ["cad", "generate", prompt, "--offline"])
    assert result.exit_code == 0, result.output
    assert "read '40 degree' as 40° between the back and the base" in result.output
    offered = re.search(r'kittylab cad iterate (\S+) "([^"]+)" --offline', result.output)
    assert offered is not None, result.output
    job_id, follow_up = offered.groups()
    again = CliRunner().invoke(app, ["cad", "iterate", job_id, follow_up, "--offline"])
    assert again.exit_code == 0, again.output
    assert "read '" not in again.output  # the follow-up left nothing to guess
