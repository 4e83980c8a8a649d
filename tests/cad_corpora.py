"""The two CAD prompt corpora and how a prompt's stated size is read from them.

- ``tests/data/cad_prompts.yaml``: 113 prompts written with the grammar (``bbox`` each);
- ``tests/data/cad_prompts_heldout.yaml``: 68 prompts written apart from it, from the family
  list alone (issue 15; ``bbox``, or ``gear: {teeth, module, thickness}`` for spur gears,
  whose extent is that of the standard involute gear).

Every prompt is parsed in the unit tests (cheap); the integration tests build a sample, one
prompt of each family from each corpus; ``benchmarks/cad_corpus_bench.py`` builds them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.cad_spec import Family, build_spec, expected_bbox

DATA = Path(__file__).parent / "data"
FIRST = DATA / "cad_prompts.yaml"
HELD_OUT = DATA / "cad_prompts_heldout.yaml"
TOLERANCE_MM = 0.1
"""Per axis: the family fixes which extent lies along x, y and z."""


@dataclass(frozen=True)
class Entry:
    prompt: str
    bbox: tuple[float, float, float]
    family: str | None
    """Stated by the held-out corpus; the first one states only sizes."""


def load(path: Path) -> list[Entry]:
    entries = []
    for raw in yaml.safe_load(path.read_text()):
        if "gear" in raw:
            gear = raw["gear"]
            spec = build_spec(
                Family.SPUR_GEAR,
                {k: float(gear[k]) for k in ("teeth", "module", "thickness")},
            )
            bbox = expected_bbox(spec)
        else:
            x, y, z = (float(v) for v in raw["bbox"])
            bbox = (x, y, z)
        entries.append(Entry(str(raw["prompt"]), bbox, raw.get("family")))
    return entries


def deviation(built: tuple[float, float, float], stated: tuple[float, float, float]) -> float:
    return max(abs(a - b) for a, b in zip(built, stated, strict=True))


def one_per_family(entries: list[Entry]) -> list[Entry]:
    """The first prompt of each family (as the grammar reads it), in corpus order."""
    seen: dict[str, Entry] = {}
    for entry in entries:
        seen.setdefault(entry.family or parse_prompt(entry.prompt).family.value, entry)
    return list(seen.values())
