"""The prompt corpus (tests/data/cad_prompts.yaml) through the real pipeline: grammar →
CadQuery in the warm worker → STEP and STL → quality score. At least 95 % must give a
valid solid whose bounding box matches the prompt's dimensions within 0.1 mm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kittylab.adapters.cad.quality import score_mesh
from kittylab.adapters.cad.worker import CadWorkerPool
from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.cad_spec import expected_bbox

CORPUS = Path(__file__).parents[1] / "data" / "cad_prompts.yaml"
TOLERANCE_MM = 0.1


@pytest.fixture(scope="module")
def pool() -> Iterator[CadWorkerPool]:
    workers = CadWorkerPool(size=1)
    workers.warm_up()
    yield workers
    workers.close()


def test_corpus_has_at_least_100_dimensioned_prompts() -> None:
    corpus = yaml.safe_load(CORPUS.read_text())
    assert len(corpus) >= 100
    assert all(len(entry["bbox"]) == 3 for entry in corpus)


def test_at_least_95_percent_of_the_corpus_builds_valid_solids_of_the_stated_size(
    pool: CadWorkerPool, tmp_path: Path
) -> None:
    corpus = yaml.safe_load(CORPUS.read_text())
    failures: list[str] = []
    for index, entry in enumerate(corpus):
        prompt, stated = entry["prompt"], sorted(float(v) for v in entry["bbox"])
        try:
            spec = parse_prompt(prompt)
            result = pool.build(spec, tmp_path / str(index))
        except Exception as exc:
            failures.append(f"{prompt!r}: {exc}")
            continue
        built = sorted(result.bbox)
        deviation = max(abs(a - b) for a, b in zip(built, stated, strict=True))
        if not result.valid or deviation > TOLERANCE_MM or result.solids < 1:
            failures.append(f"{prompt!r}: valid={result.valid} bbox={built} stated={stated}")
            continue
        assert result.step.stat().st_size > 0
        quality = score_mesh(
            result.stl,
            expected_bbox=expected_bbox(spec),
            solid_valid=result.valid,
            parametric=True,
            bed_mm=(1000, 1000, 1000),
        )
        if not quality.watertight:
            failures.append(f"{prompt!r}: STL not watertight")
    rate = 1 - len(failures) / len(corpus)
    print(f"\ncorpus: {len(corpus) - len(failures)}/{len(corpus)} = {rate:.1%}")
    for failure in failures:
        print("  failed:", failure)
    assert rate >= 0.95, failures
