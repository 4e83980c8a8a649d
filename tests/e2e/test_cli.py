"""The command line as an operator meets it: clear one-line errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KITTYLAB_")}
    return subprocess.run(
        [sys.executable, "-m", "kittylab.cli", *args],
        env={**clean, "KITTYLAB_DATA_DIR": str(tmp_path / "data"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_broken_manifest_names_file_line_and_field(tmp_path: Path) -> None:
    manifest = tmp_path / "lab.yaml"
    manifest.write_text("version: 1\nzones:\n  - name: shop\n    hazard_level: extreme\n")
    result = _run(tmp_path, "lab", "apply", str(manifest))
    assert result.returncode == 1
    assert f"{manifest}:4: zones[0].hazard_level:" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_one_line_and_exit_3(tmp_path: Path) -> None:
    result = _run(
        tmp_path, "users", "list", KITTYLAB_DATABASE_URL="postgresql://kl:hunter2@127.0.0.1:1/x"
    )
    assert result.returncode == 3
    assert result.stderr.startswith("error: database:")
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_bad_setting_names_the_variable_and_exits_2(tmp_path: Path) -> None:
    result = _run(tmp_path, "db", "upgrade", KITTYLAB_HTTP__PORT="eighty")
    assert result.returncode == 2
    assert "KITTYLAB_HTTP__PORT" in result.stderr


def test_quick_start_commands_work_on_an_empty_data_dir(tmp_path: Path) -> None:
    applied = _run(tmp_path, "lab", "apply", "examples/lab.yaml")
    assert applied.returncode == 0, applied.stderr
    assert "devices: 18 created" in applied.stdout
    again = _run(tmp_path, "lab", "apply", "examples/lab.yaml")
    assert "devices: 0 created, 0 updated, 18 unchanged, 0 retired" in again.stdout
    people = _run(tmp_path, "users", "list").stdout
    assert "ada" in people and "admin" in people
    shown = _run(tmp_path, "lab", "show").stdout
    assert "welder-power" in shown and "laser-room" in shown


def test_a_malformed_database_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    result = _run(tmp_path, "lab", "show", KITTYLAB_DATABASE_URL="postgresql://u:hunter2@db:port/x")
    assert result.returncode == 2
    assert "KITTYLAB_DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr
