"""The quality score on real meshes (trimesh + manifold3d) and the preview renderer."""

from __future__ import annotations

from pathlib import Path

import pytest
import trimesh

from kittylab.adapters.cad.preview import render_png
from kittylab.adapters.cad.quality import measure_min_wall, score_mesh
from kittylab.domain.errors import ValidationFailed

BED = (256, 256, 256)


def _stl(tmp_path: Path, mesh: trimesh.Trimesh, name: str = "part.stl") -> Path:
    path = tmp_path / name
    mesh.export(str(path))
    return path


def test_a_closed_box_of_the_requested_size_scores_full_marks(tmp_path: Path) -> None:
    path = _stl(tmp_path, trimesh.creation.box((40, 30, 10)))
    report = score_mesh(
        path, expected_bbox=(30, 40, 10), solid_valid=True, parametric=True, bed_mm=BED
    )
    assert report.score == 1.0
    assert report.breakdown["bounding_box"]["within_tolerance"] is True
    assert report.watertight and report.manifold


def test_a_wrong_size_lowers_the_bounding_box_component(tmp_path: Path) -> None:
    path = _stl(tmp_path, trimesh.creation.box((40, 30, 10)))
    report = score_mesh(
        path, expected_bbox=(40, 30, 11), solid_valid=True, parametric=True, bed_mm=BED
    )
    assert 0 < report.breakdown["components"]["bounding_box"] < 1
    assert report.score < 1.0


def test_an_open_mesh_is_neither_watertight_nor_manifold(tmp_path: Path) -> None:
    box = trimesh.creation.box((20, 20, 20))
    open_box = trimesh.Trimesh(vertices=box.vertices, faces=box.faces[:-2], process=False)
    report = score_mesh(
        _stl(tmp_path, open_box), expected_bbox=None, solid_valid=None, parametric=False, bed_mm=BED
    )
    assert report.breakdown["mesh"] == {"watertight": False, "manifold": False}
    assert report.breakdown["components"]["solid_valid"] == 0.0
    assert "bounding_box" not in report.breakdown["components"]
    assert report.score < 0.5


def test_a_part_larger_than_the_bed_and_thin_walls_cost_printability(tmp_path: Path) -> None:
    path = _stl(tmp_path, trimesh.creation.box((300, 20, 20)))
    report = score_mesh(
        path, expected_bbox=None, solid_valid=True, parametric=True, bed_mm=BED, min_wall_mm=0.5
    )
    printability = report.breakdown["printability"]
    assert printability["fits_bed"] is False
    assert printability["min_wall_ok"] is False
    assert report.breakdown["components"]["printability"] < 0.5


def test_without_a_wall_from_the_spec_the_thinnest_wall_is_measured_on_the_mesh(
    tmp_path: Path,
) -> None:
    tube = trimesh.creation.annulus(r_min=8, r_max=10, height=30, sections=96)
    report = score_mesh(
        _stl(tmp_path, tube), expected_bbox=None, solid_valid=None, parametric=False, bed_mm=BED
    )
    printability = report.breakdown["printability"]
    assert printability["min_wall_mm"] == pytest.approx(2.0, abs=0.05)
    assert printability["min_wall_source"].startswith("measured")
    assert printability["min_wall_ok"] is True

    fin = score_mesh(
        _stl(tmp_path, trimesh.creation.box((40, 0.5, 20)), "fin.stl"),
        expected_bbox=None,
        solid_valid=None,
        parametric=False,
        bed_mm=BED,
    )
    assert fin.breakdown["printability"]["min_wall_mm"] == pytest.approx(0.5, abs=0.01)
    assert fin.breakdown["printability"]["min_wall_ok"] is False


def test_a_wall_the_spec_states_is_taken_as_stated(tmp_path: Path) -> None:
    report = score_mesh(
        _stl(tmp_path, trimesh.creation.box((40, 0.5, 20))),
        expected_bbox=None,
        solid_valid=True,
        parametric=True,
        bed_mm=BED,
        min_wall_mm=3.0,
    )
    assert report.breakdown["printability"]["min_wall_mm"] == 3.0
    assert report.breakdown["printability"]["min_wall_source"] == "spec"


def test_measuring_the_wall_of_a_detailed_mesh_stays_cheap(tmp_path: Path) -> None:
    import time

    sphere = trimesh.creation.icosphere(subdivisions=5, radius=10)  # 20,480 triangles
    started = time.perf_counter()
    wall = measure_min_wall(sphere)
    assert time.perf_counter() - started < 3.0
    assert wall == pytest.approx(20, abs=0.2)  # a solid ball: its diameter, more or less


def test_overhangs_are_measured_away_from_the_bed(tmp_path: Path) -> None:
    flat = score_mesh(
        _stl(tmp_path, trimesh.creation.box((20, 20, 20)), "flat.stl"),
        expected_bbox=None,
        solid_valid=True,
        parametric=True,
        bed_mm=BED,
    )
    assert flat.breakdown["printability"]["overhang_share"] == 0.0
    # A T shape: the underside of the bar hangs in the air.
    tee = trimesh.util.concatenate(
        [
            trimesh.creation.box(
                (10, 10, 30), trimesh.transformations.translation_matrix((0, 0, 15))
            ),
            trimesh.creation.box(
                (50, 10, 5), trimesh.transformations.translation_matrix((0, 0, 32.5))
            ),
        ]
    )
    hanging = score_mesh(
        _stl(tmp_path, tee, "tee.stl"),
        expected_bbox=None,
        solid_valid=True,
        parametric=True,
        bed_mm=BED,
    )
    assert hanging.breakdown["printability"]["overhang_share"] > 0.05


def test_a_file_that_is_not_a_mesh_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.stl"
    path.write_bytes(b"solid nothing\nendsolid nothing\n")
    with pytest.raises(ValidationFailed):
        score_mesh(path, expected_bbox=None, solid_valid=None, parametric=False, bed_mm=BED)


def test_the_preview_is_a_png_of_the_requested_size(tmp_path: Path) -> None:
    from io import BytesIO

    from PIL import Image

    png = render_png(trimesh.creation.cylinder(radius=10, height=30), size=256)
    image = Image.open(BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (256, 256)
    # Something was drawn: not every pixel is the background.
    assert len(image.getcolors(maxcolors=1 << 16) or []) > 3
