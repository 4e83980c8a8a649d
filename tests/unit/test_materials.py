"""Hazardous print materials: the classification and the start rule (issue 13)."""

from __future__ import annotations

import pytest

from kittylab.domain.materials import MaterialHazard, MaterialRule, classify, start_refusal


@pytest.mark.parametrize(
    ("names", "classes"),
    [
        (["ABS"], ("styrene",)),
        (["asa"], ("styrene",)),
        (["PA6-CF"], ("nylon", "fibre")),
        (["Nylon 12"], ("nylon",)),
        (["PETG-GF"], ("fibre",)),
        (["Standard Resin"], ("resin",)),
        (["PLA", "ABS"], ("styrene",)),
    ],
)
def test_hazardous_materials_are_classified(names: list[str], classes: tuple[str, ...]) -> None:
    hazard = classify(names)
    assert hazard is not None and hazard.classes == classes


@pytest.mark.parametrize("names", [["PLA"], ["PETG"], ["TPU"], [None, ""], []])
def test_ordinary_materials_are_not_flagged(names: list[str | None]) -> None:
    assert classify(names) is None


ABS = MaterialHazard(("styrene",), ("ABS",))


def test_a_hazardous_job_waits_for_the_zones_fume_extraction() -> None:
    rules = [MaterialRule(fume_extraction=True)]
    off = start_refusal(ABS, rules, zone="farm", extraction=[("fan", False)], ppe_confirmed=[])
    assert off is not None and "fume extraction of farm on (fan is off)" in off
    none = start_refusal(ABS, rules, zone="farm", extraction=[], ppe_confirmed=[])
    assert none is not None and "role: fume_extraction" in none
    assert (
        start_refusal(ABS, rules, zone="farm", extraction=[("fan", True)], ppe_confirmed=[]) is None
    )


def test_a_hazardous_job_needs_the_ppe_the_policy_names() -> None:
    rules = [MaterialRule(ppe=("respirator", "gloves"))]
    missing = start_refusal(ABS, rules, zone="farm", extraction=[], ppe_confirmed=["gloves"])
    assert missing is not None and missing.endswith("needs PPE confirmed with the job: respirator")
    ok = start_refusal(
        ABS, rules, zone="farm", extraction=[], ppe_confirmed=["gloves", "respirator"]
    )
    assert ok is None


def test_ordinary_jobs_and_zones_without_a_rule_start_as_before() -> None:
    rules = [MaterialRule(fume_extraction=True)]
    assert start_refusal(None, rules, zone="farm", extraction=[], ppe_confirmed=[]) is None
    assert start_refusal(ABS, [], zone="farm", extraction=[], ppe_confirmed=[]) is None
