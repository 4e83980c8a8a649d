"""The prompt corpora through the real pipeline: grammar → CadQuery in the warm worker →
STEP and STL → quality score. CI builds a sample, one prompt of each family from each
corpus (``tests/cad_corpora.py``), which must give valid, watertight solids whose extents
match the prompt's dimensions axis by axis within 0.1 mm; every prompt is parsed in
``tests/unit/test_cad_corpora.py`` and every one is built by
``benchmarks/cad_corpus_bench.py``. For a few families the holes and bores are measured on
the built mesh too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh

from kittylab.adapters.cad.quality import score_mesh
from kittylab.adapters.cad.worker import CadWorkerPool
from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.cad_spec import expected_bbox
from tests.cad_corpora import FIRST, HELD_OUT, TOLERANCE_MM, Entry, deviation, load, one_per_family

SAMPLE = one_per_family(load(FIRST)) + one_per_family(load(HELD_OUT))


@pytest.fixture(scope="module")
def pool() -> Iterator[CadWorkerPool]:
    workers = CadWorkerPool(size=1)
    workers.warm_up()
    yield workers
    workers.close()


def test_the_sample_holds_every_family_from_each_corpus() -> None:
    assert len(SAMPLE) == 22


@pytest.mark.parametrize("entry", SAMPLE, ids=lambda e: e.prompt[:40])
def test_a_prompt_of_each_family_builds_a_valid_solid_of_the_stated_size(
    pool: CadWorkerPool, tmp_path: Path, entry: Entry
) -> None:
    spec = parse_prompt(entry.prompt)
    result = pool.build(spec, tmp_path)
    assert result.valid and result.solids >= 1
    assert deviation(result.bbox, entry.bbox) <= TOLERANCE_MM, (result.bbox, entry.bbox)
    assert result.step.stat().st_size > 0
    quality = score_mesh(
        result.stl,
        expected_bbox=expected_bbox(spec),
        solid_valid=result.valid,
        parametric=True,
        bed_mm=(1000, 1000, 1000),
    )
    assert quality.watertight


def _radii(mesh: trimesh.Trimesh, centre: tuple[float, float]) -> np.ndarray:
    xy = np.asarray(mesh.vertices)[:, :2] - np.asarray(centre)
    return np.hypot(xy[:, 0], xy[:, 1])


@pytest.mark.parametrize(
    ("prompt", "inner_mm", "outer_mm"),
    [
        ("tube OD 20 ID 16 length 100", 16, 20),
        ("M3 x 10 standoff, 6 mm OD", 3.4, 6),  # M3 clearance, ISO 273 medium
        ("M4 washer", 4.3, 9),  # ISO 7089
        ("spacer 1/2 inch OD, 1/4 inch ID, 1 inch long", 6.35, 12.7),
        ("a spur gear 20 teeth module 2, 6 mm bore", 6, 44),
    ],
)
def test_bores_and_outer_diameters_are_built_as_stated(
    pool: CadWorkerPool, tmp_path: Path, prompt: str, inner_mm: float, outer_mm: float
) -> None:
    mesh = trimesh.load(str(pool.build(parse_prompt(prompt), tmp_path).stl), force="mesh")
    radii = _radii(mesh, (0.0, 0.0))
    # Surface points lie on the surfaces: the bore's wall is the nearest to the axis.
    assert radii.min() == pytest.approx(inner_mm / 2, abs=0.01)
    assert radii.max() == pytest.approx(outer_mm / 2, abs=0.01)


@pytest.mark.parametrize(
    ("prompt", "diameter_mm", "centres"),
    [
        (
            "a 60 by 60 mounting plate, 4 mm thick, four M4 holes in the corners",
            4.5,
            [(x, y) for x in (-24, 24) for y in (-24, 24)],  # 6 mm in from the edges
        ),
        (
            "mounting plate 100 x 80 x 5 with M5 holes on a 80 x 60 pattern",
            5.5,
            [(x, y) for x in (-40, 40) for y in (-30, 30)],
        ),
        ("block 40x40x40 with a 10 mm hole in the center", 10, [(0, 0)]),
    ],
)
def test_plate_holes_are_built_where_and_as_wide_as_stated(
    pool: CadWorkerPool,
    tmp_path: Path,
    prompt: str,
    diameter_mm: float,
    centres: list[tuple[float, float]],
) -> None:
    mesh = trimesh.load(str(pool.build(parse_prompt(prompt), tmp_path).stl), force="mesh")
    for centre in centres:
        radii = _radii(mesh, centre)
        near = radii[radii < diameter_mm]
        # The hole's wall is there, at the stated radius, and no surface lies inside it.
        assert near.size > 0, centre
        assert near.min() == pytest.approx(diameter_mm / 2, abs=0.01), centre
