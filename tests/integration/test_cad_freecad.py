"""The ``freecad`` provider builds the part library through ``freecadcmd``.

FreeCAD is Debian's ``freecad`` package (without its recommends), installed for the test
command by ``scripts/install-system-deps.sh --test`` (``scripts/setup.sh --dev``). Where it
is missing the build test is reported skipped; the unavailability report is tested
everywhere. One ``freecadcmd`` process per job, as in production: a build takes about one
second here (FreeCAD's start-up most of it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kittylab.adapters.cad.freecad_provider import FreeCadProvider
from kittylab.adapters.cad.quality import score_mesh
from kittylab.cad.errors import ProviderUnavailable
from kittylab.cad.ports import ProviderRequest
from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.enums import ArtifactType
from tests.cad_corpora import FIRST, HELD_OUT, TOLERANCE_MM, Entry, deviation, load, one_per_family

installed = pytest.mark.skipif(
    shutil.which("freecadcmd") is None, reason="freecadcmd is not installed (Debian freecad)"
)
SAMPLE = one_per_family(load(FIRST)) + one_per_family(load(HELD_OUT))


def test_without_freecadcmd_the_provider_says_so(tmp_path: Path) -> None:
    provider = FreeCadProvider("no-such-freecadcmd")
    assert provider.unavailable_reason() == (
        "no-such-freecadcmd is not installed (Debian package freecad)"
    )
    with pytest.raises(ProviderUnavailable):
        provider.generate(ProviderRequest("a 20 mm cube", parse_prompt("a 20 mm cube")), tmp_path)


@installed
@pytest.mark.parametrize("entry", SAMPLE, ids=lambda e: e.prompt[:40])
def test_freecad_builds_a_prompt_of_each_family_to_the_stated_size(
    tmp_path: Path, entry: Entry
) -> None:
    output = FreeCadProvider().generate(
        ProviderRequest(entry.prompt, parse_prompt(entry.prompt)), tmp_path
    )
    x, y, z = (float(v) for v in output.metadata["build"]["brep_bbox_mm"])
    assert output.solid_valid
    assert deviation((x, y, z), entry.bbox) <= TOLERANCE_MM, ((x, y, z), entry.bbox)
    quality = score_mesh(
        output.files[ArtifactType.STL],
        expected_bbox=entry.bbox,
        solid_valid=output.solid_valid,
        parametric=True,
        bed_mm=(1000, 1000, 1000),
    )
    assert quality.watertight
    assert output.files[ArtifactType.STEP].read_bytes().startswith(b"ISO-10303-21")
    assert output.model_version.startswith("freecad 0.")
