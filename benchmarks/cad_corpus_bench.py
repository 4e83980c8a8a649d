"""CAD corpus benchmark: every prompt of both corpora read by the grammar and built, scored
as the corpus tests score a sample: a valid, watertight solid whose extents match the
prompt's stated size within 0.1 mm per axis.

- ``tests/data/cad_prompts.yaml``: 113 prompts written with the grammar;
- ``tests/data/cad_prompts_heldout.yaml``: 68 prompts written apart from it (issue 15).

CadQuery builds in one warm worker (the production pool); ``--freecad`` also builds every
prompt with the ``freecad`` provider (one confined ``freecadcmd`` process per prompt, as in
production).

Run:  .venv/bin/python benchmarks/cad_corpus_bench.py [--freecad] [--out FILE]
Writes benchmarks/results/cad_corpus_bench.json (or FILE) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the corpora's reader lives with the tests

from tests.cad_corpora import FIRST, HELD_OUT, TOLERANCE_MM, deviation, load  # noqa: E402

from kittylab.adapters.cad.freecad_provider import FreeCadProvider  # noqa: E402
from kittylab.adapters.cad.quality import score_mesh  # noqa: E402
from kittylab.adapters.cad.worker import CadWorkerPool  # noqa: E402
from kittylab.cad.ports import ProviderRequest  # noqa: E402
from kittylab.domain.cad_prompt import parse_prompt  # noqa: E402
from kittylab.domain.cad_spec import PartSpec, expected_bbox  # noqa: E402
from kittylab.domain.enums import ArtifactType  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cad_corpus_bench.json"

# (extents, valid, stl) of one built part
Built = tuple[tuple[float, float, float], bool, Path]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--freecad", action="store_true", help="also build with FreeCAD")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, object] = {
        "benchmark": "both CAD corpora: parse, build, score (within 0.1 mm per axis)",
        "tolerance_mm": TOLERANCE_MM,
    }
    pool = CadWorkerPool(size=1)
    started = time.perf_counter()
    pool.warm_up()
    results["cadquery_warm_up_s"] = round(time.perf_counter() - started, 2)

    def cadquery(spec: PartSpec, out: Path) -> Built:
        built = pool.build(spec, out)
        return built.bbox, built.valid, built.stl

    def freecad(spec: PartSpec, out: Path) -> Built:
        output = FreeCadProvider().generate(ProviderRequest("", spec), out)
        x, y, z = (float(v) for v in output.metadata["build"]["brep_bbox_mm"])
        return (x, y, z), bool(output.solid_valid), output.files[ArtifactType.STL]

    builders: dict[str, Callable[[PartSpec, Path], Built]] = {"cadquery": cadquery}
    if args.freecad:
        builders["freecad"] = freecad
    try:
        for label, path in (("first", FIRST), ("held_out", HELD_OUT)):
            results[label] = {name: _run(path, builder) for name, builder in builders.items()}
    finally:
        pool.close()
    results["machine"] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _run(path: Path, build: Callable[[PartSpec, Path], Built]) -> dict[str, object]:
    entries = load(path)
    failures: list[str] = []
    build_ms: list[float] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for index, entry in enumerate(entries):
            try:
                spec = parse_prompt(entry.prompt)
            except Exception as exc:
                failures.append(f"{entry.prompt!r}: not read: {exc}")
                continue
            out = Path(tmp) / str(index)
            out.mkdir()
            t0 = time.perf_counter()
            try:
                extents, valid, stl = build(spec, out)
            except Exception as exc:
                failures.append(f"{entry.prompt!r}: not built: {exc}")
                continue
            build_ms.append((time.perf_counter() - t0) * 1000)
            off = deviation(extents, entry.bbox)
            quality = score_mesh(
                stl,
                expected_bbox=expected_bbox(spec),
                solid_valid=valid,
                parametric=True,
                bed_mm=(1000, 1000, 1000),
            )
            if not valid or off > TOLERANCE_MM or not quality.watertight:
                failures.append(
                    f"{entry.prompt!r}: valid={valid} watertight={quality.watertight} "
                    f"built={[round(v, 3) for v in extents]} stated={list(entry.bbox)}"
                )
    ordered = sorted(build_ms) or [0.0]
    passed = len(entries) - len(failures)
    return {
        "prompts": len(entries),
        "within_tolerance": passed,
        "rate": round(passed / len(entries), 4),
        "failures": failures,
        "build_p50_ms": round(statistics.median(ordered), 1),
        "build_p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1),
        "total_s": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    main()
