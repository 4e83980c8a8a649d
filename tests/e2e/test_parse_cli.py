"""``kittylab parse`` and ``kittylab evaluate`` as processes: no server, no database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "examples" / "lab.yaml"


def _run(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KITTYLAB_")}
    return subprocess.run(
        [sys.executable, "-m", "kittylab.cli", *args],
        env={**clean, "KITTYLAB_DATA_DIR": str(tmp_path / "data"), "KITTYLAB_LOG_LEVEL": "ERROR"},
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_parse_reads_lines_on_stdin_and_writes_one_json_object_per_line(tmp_path: Path) -> None:
    result = _run(
        tmp_path, "parse", "--lab", str(LAB), "--no-model",
        stdin="pause the prusa\nresume it\nunlock the welding door\nlatest price of argon\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["intent"], r["device"], r["tier"], r["hazardous"]) for r in rows] == [
        ("print_pause", "prusa-mk4", "local", False),
        ("print_resume", "prusa-mk4", "local", False),
        ("door_unlock", "welding-door", "local", True),
        ("ask", None, "mcp", False),
    ]
    assert not (tmp_path / "data").exists()  # nothing started, nothing written


def test_evaluate_prints_accuracy_per_intent_and_a_confusion_matrix(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"text": "pause the voron", "intent": "print_pause", "device": "voron-24"}\n'
        '{"text": "what is pla", "intent": "ask", "device": null}\n'
    )
    result = _run(tmp_path, "evaluate", str(corpus), "--lab", str(LAB), "--no-model")
    assert result.returncode == 0, result.stderr
    assert "intent and device: 100.0%" in result.stdout
    assert "confusion matrix" in result.stdout
    assert "print_pause" in result.stdout
