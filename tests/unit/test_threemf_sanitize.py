"""An uploaded 3MF reduced to geometry (``adapters/slicer/threemf.py``): what is kept, what
is dropped, and the archives refused before anything is decompressed. The 3MF files are
written here with ``zipfile``; ``build_3mf`` is shared with the slicer's integration tests."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from xml.etree import ElementTree

import pytest

from kittylab.adapters.slicer.threemf import (
    CORE,
    ArchiveLimits,
    Sanitized,
    sanitize_3mf,
)
from kittylab.fabrication.ports import Unsliceable, UnsliceableModel

CUBE_VERTICES = [(0, 0, 0), (20, 20, 0), (20, 0, 0), (0, 20, 0)]
CUBE_VERTICES += [(0, 0, 20), (20, 0, 20), (20, 20, 20), (0, 20, 20)]
CUBE_TRIANGLES = [(0, 1, 2), (0, 3, 1), (4, 5, 6), (4, 6, 7), (0, 2, 5), (0, 5, 4)]
CUBE_TRIANGLES += [(2, 1, 6), (2, 6, 5), (1, 3, 7), (1, 7, 6), (3, 0, 4), (3, 4, 7)]
SLIC3RPE = "http://schemas.slic3r.org/3mf/2017/06"

PRUSA_CONFIG = "Metadata/Slic3r_PE.config"
CUSTOM_GCODE = "Metadata/Prusa_Slicer_custom_gcode_per_print_z.xml"


def cube_model(object_name: str = "cube", *, object_extra: str = "", extra: str = "") -> str:
    """A 3MF model part holding one 20 mm cube, as PrusaSlicer 2.5 writes it."""
    vertices = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in CUBE_VERTICES)
    triangles = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in CUBE_TRIANGLES)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<model unit="millimeter" xml:lang="en-US" xmlns="{CORE}" xmlns:slic3rpe="{SLIC3RPE}">\n'
        ' <metadata name="slic3rpe:Version3mf">1</metadata>\n'
        ' <metadata name="Title">cube</metadata>\n'
        f" {extra}\n"
        " <resources>\n"
        f'  <object id="1" name="{object_name}" type="model">{object_extra}<mesh>'
        f"<vertices>{vertices}</vertices><triangles>{triangles}</triangles>"
        "</mesh></object>\n"
        " </resources>\n"
        ' <build><item objectid="1" transform="1 0 0 0 1 0 0 0 1 110 110 10" printable="1"/>'
        "</build>\n"
        "</model>\n"
    )


def build_3mf(
    path: Path,
    extra: Mapping[str, str | bytes] | None = None,
    *,
    model: str | None = None,
) -> Path:
    """A 3MF at ``path``: content types, relationships, ``model`` (a cube by default) and
    the ``extra`` members (settings, custom G-code…)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Default Extension="rels" ContentType="applicati'
            'on/vnd.openxmlformats-package.relationships+xml"/><Default Extension="model" Cont'
            'entType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>',
        )
        archive.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxm'
            'lformats.org/package/2006/relationships"><Relationship Target="/3D/3dmodel.model'
            '" Id="rel-1" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"'
            "/></Relationships>",
        )
        archive.writestr("3D/3dmodel.model", model if model is not None else cube_model())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def _sanitize(source: Path, limits: ArchiveLimits | None = None) -> tuple[Path, Sanitized]:
    out = source.with_name("clean.3mf")
    return out, sanitize_3mf(source, out, limits or ArchiveLimits())


def _refusal(source: Path, limits: ArchiveLimits | None = None) -> UnsliceableModel:
    with pytest.raises(UnsliceableModel) as caught:
        _sanitize(source, limits)
    assert caught.value.field == "model"
    return caught.value


def test_only_the_geometry_is_kept_and_every_setting_and_custom_gcode_is_dropped(
    tmp_path: Path,
) -> None:
    source = build_3mf(
        tmp_path / "part.3mf",
        {
            PRUSA_CONFIG: '; post_process = /bin/sh -c "touch MARKER"\n',
            CUSTOM_GCODE: '<custom_gcodes_per_print_z><code print_z="1" type="4" '
            'extra="M140 S190"/></custom_gcodes_per_print_z>',
            "Metadata/Slic3r_PE_model.config": "<config/>",
            "Metadata/Prusa_Slicer_layer_config_ranges.xml": "<objects/>",
            "Metadata/project_settings.config": '{"post_process": ["/bin/sh"]}',
            "Metadata/plate_1.gcode": "M104 S450\n",
            "Metadata/thumbnail.png": b"\x89PNG",
        },
    )

    out, result = _sanitize(source)

    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == [
            "3D/3dmodel.model",
            "[Content_Types].xml",
            "_rels/.rels",
        ]
        root = ElementTree.fromstring(archive.read("3D/3dmodel.model"))
    assert result.objects == 1
    assert PRUSA_CONFIG in result.dropped and CUSTOM_GCODE in result.dropped
    assert root.tag == f"{{{CORE}}}model" and root.get("unit") == "millimeter"
    assert not root.findall(f"{{{CORE}}}metadata")
    vertices = root.findall(f".//{{{CORE}}}vertex")
    assert [
        (float(v.get("x", "")), float(v.get("y", "")), float(v.get("z", ""))) for v in vertices
    ] == [(float(x), float(y), float(z)) for x, y, z in CUBE_VERTICES]
    assert len(root.findall(f".//{{{CORE}}}triangle")) == len(CUBE_TRIANGLES)
    item = root.find(f"{{{CORE}}}build/{{{CORE}}}item")
    assert item is not None and item.get("transform") == "1 0 0 0 1 0 0 0 1 110 110 10"


def test_an_object_name_cannot_carry_a_line_into_the_gcode(tmp_path: Path) -> None:
    source = build_3mf(
        tmp_path / "part.3mf", model=cube_model("x&#10;M104 S451&#13;&#10;G28 &quot;&lt;")
    )

    out, _ = _sanitize(source)

    with zipfile.ZipFile(out) as archive:
        root = ElementTree.fromstring(archive.read("3D/3dmodel.model"))
    obj = root.find(f".//{{{CORE}}}object")
    assert obj is not None
    assert obj.get("name") == "x_M104 S451__G28 __"


def test_painting_materials_and_foreign_elements_are_dropped(tmp_path: Path) -> None:
    model = cube_model(
        object_extra=f'<metadata name="x">y</metadata><slic3rpe:anything xmlns:slic3rpe="{SLIC3RPE}"/>',
        extra='<resources2/><basematerials id="9"><base name="red"/></basematerials>',
    ).replace(
        '<triangle v1="0" v2="1" v3="2"/>',
        '<triangle v1="0" v2="1" v3="2" slic3rpe:mmu_segmentation="8" p1="3"/>',
    )
    out, _ = _sanitize(build_3mf(tmp_path / "part.3mf", model=model))

    with zipfile.ZipFile(out) as archive:
        text = archive.read("3D/3dmodel.model").decode()
    assert "slic3rpe" not in text and "mmu_segmentation" not in text
    assert "metadata" not in text and "basematerials" not in text and "p1=" not in text
    assert '<triangle v1="0" v2="1" v3="2"/>' in text


def test_a_zip_bomb_is_refused_from_the_directory_alone(tmp_path: Path) -> None:
    bomb = build_3mf(tmp_path / "bomb.3mf")
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Metadata/zeros.bin", bytes(64 * 1024**2))

    started = time.monotonic()
    refusal = _refusal(bomb)

    assert time.monotonic() - started < 1
    assert refusal.reason is Unsliceable.UNSAFE_ARCHIVE
    assert "Metadata/zeros.bin" in str(refusal) and "zip bomb" in str(refusal)


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (ArchiveLimits(max_entries=3), "4 members (at most 3)"),
        (ArchiveLimits(max_entry_bytes=1000), "bytes uncompressed (at most 1000)"),
        (ArchiveLimits(max_total_bytes=2000), "more than 2000 bytes uncompressed"),
    ],
)
def test_an_archive_past_a_limit_is_refused(
    tmp_path: Path, limits: ArchiveLimits, expected: str
) -> None:
    source = build_3mf(tmp_path / "part.3mf", {"Metadata/notes.txt": "x" * 1500})

    refusal = _refusal(source, limits)

    assert refusal.reason is Unsliceable.UNSAFE_ARCHIVE
    assert expected in str(refusal)


def test_many_members_are_refused_before_the_directory_is_parsed(tmp_path: Path) -> None:
    source = build_3mf(tmp_path / "part.3mf", {f"Metadata/{i}": "" for i in range(1200)})

    refusal = _refusal(source)

    assert "1203 members (at most 1000)" in str(refusal)


@pytest.mark.parametrize(
    "name", ["../escape.txt", "/etc/cron.d/x", "3D/../../x", "Metadata\\x", "C:/x", "a\nb"]
)
def test_a_member_name_that_could_leave_the_archive_is_refused(tmp_path: Path, name: str) -> None:
    source = build_3mf(tmp_path / "part.3mf")
    with zipfile.ZipFile(source, "a") as archive:
        archive.writestr(zipfile.ZipInfo(name), "x")

    refusal = _refusal(source)

    assert refusal.reason is Unsliceable.UNSAFE_ARCHIVE
    assert "leaves the archive" in str(refusal)


def test_a_member_written_twice_is_refused(tmp_path: Path) -> None:
    source = build_3mf(tmp_path / "part.3mf")
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(source, "a") as archive,
    ):
        archive.writestr("3D/3dmodel.model", cube_model("second"))

    assert "appears twice" in str(_refusal(source))


def test_a_compression_other_than_deflate_is_refused(tmp_path: Path) -> None:
    source = build_3mf(tmp_path / "part.3mf")
    with zipfile.ZipFile(source, "a", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("Metadata/x.txt", "x")

    assert "compression method 12" in str(_refusal(source))


def test_an_xml_entity_bomb_is_refused_at_once(tmp_path: Path) -> None:
    laughs = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 12)
    )
    model = f'<?xml version="1.0"?><!DOCTYPE model [{laughs}]>' + cube_model().split("?>", 1)[1]
    model = model.replace('<metadata name="Title">cube', '<metadata name="Title">&l11;')

    started = time.monotonic()
    refusal = _refusal(build_3mf(tmp_path / "part.3mf", model=model))

    assert time.monotonic() - started < 1
    assert refusal.reason is Unsliceable.UNSAFE_ARCHIVE
    assert "DTD" in str(refusal)


def test_a_modifier_or_negative_volume_is_refused_rather_than_printed_solid(
    tmp_path: Path,
) -> None:
    config = (
        '<config><object id="1"><volume firstid="0" lastid="11">'
        '<metadata type="volume" key="volume_type" value="NegativeVolume"/>'
        "</volume></object></config>"
    )
    source = build_3mf(tmp_path / "part.3mf", {"Metadata/Slic3r_PE_model.config": config})

    refusal = _refusal(source)

    assert refusal.reason is Unsliceable.UNSUPPORTED_CONTENT
    assert "'NegativeVolume' volume" in str(refusal)


def test_a_modifier_volume_in_the_older_prusaslicer_form_is_refused(tmp_path: Path) -> None:
    config = (
        '<config><object id="1"><volume firstid="0" lastid="11">'
        '<metadata type="volume" key="modifier" value="1"/></volume></object></config>'
    )
    source = build_3mf(tmp_path / "part.3mf", {"Metadata/Slic3r_PE_model.config": config})

    assert _refusal(source).reason is Unsliceable.UNSUPPORTED_CONTENT


def test_a_bambu_modifier_part_is_refused(tmp_path: Path) -> None:
    config = '<config><object id="1"><part id="2" subtype="modifier_part"/></object></config>'
    source = build_3mf(tmp_path / "part.3mf", {"Metadata/model_settings.config": config})

    assert _refusal(source).reason is Unsliceable.UNSUPPORTED_CONTENT


def test_a_project_keeping_geometry_in_other_model_files_is_refused(tmp_path: Path) -> None:
    production = "http://schemas.microsoft.com/3dmanufacturing/production/2015/06"
    model = (
        f'<model unit="millimeter" xmlns="{CORE}" xmlns:p="{production}"><resources>'
        '<object id="2" type="model"><components>'
        '<component p:path="/3D/Objects/object_1.model" objectid="1"/>'
        '</components></object></resources><build><item objectid="2"/></build></model>'
    )
    source = build_3mf(tmp_path / "part.3mf", model=model)

    refusal = _refusal(source)

    assert refusal.reason is Unsliceable.UNSUPPORTED_CONTENT
    assert "Bambu Studio or OrcaSlicer" in str(refusal)


def test_files_that_are_not_3mf_models_are_unreadable(tmp_path: Path) -> None:
    not_zip = tmp_path / "text.3mf"
    not_zip.write_text("solid cube\nendsolid cube\n")
    no_model = tmp_path / "empty.3mf"
    with zipfile.ZipFile(no_model, "w") as archive:
        archive.writestr("Metadata/Slic3r_PE.config", "; x = 1\n")
    broken = build_3mf(tmp_path / "broken.3mf", model="<model><resources>")
    other = build_3mf(tmp_path / "other.3mf", model="<html/>")

    for source in (not_zip, no_model, broken, other):
        assert _refusal(source).reason is Unsliceable.UNREADABLE, source.name


def test_a_model_without_objects_is_empty(tmp_path: Path) -> None:
    source = build_3mf(
        tmp_path / "part.3mf", model=f'<model xmlns="{CORE}"><resources/><build/></model>'
    )

    assert _refusal(source).reason is Unsliceable.EMPTY


def test_markup_in_a_coordinate_stays_inside_its_attribute(tmp_path: Path) -> None:
    model = cube_model().replace(
        '<vertex x="0" y="0" z="0"/>', '<vertex x="0&quot;/&gt;&lt;a" y="0" z="0"/>'
    )
    out, _ = _sanitize(build_3mf(tmp_path / "part.3mf", model=model))

    with zipfile.ZipFile(out) as archive:
        root = ElementTree.fromstring(archive.read("3D/3dmodel.model"))
    vertices = root.findall(f".//{{{CORE}}}vertex")
    assert len(vertices) == len(CUBE_VERTICES)
    assert vertices[0].get("x") == '0"/><a'
