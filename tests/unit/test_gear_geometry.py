"""The spur gear's tooth geometry (pure): circles of a standard 20° involute gear, and
flank points checked against the involute built independently, as the end of a string
unwound from the base circle."""

from __future__ import annotations

import math

import pytest

from kittylab.domain.cad_prompt import parse_prompt
from kittylab.domain.cad_spec import (
    GEAR_PRESSURE_ANGLE_DEG,
    gear_base_diameter,
    gear_flank,
    gear_half_tooth_angle,
    gear_pitch_diameter,
    gear_root_diameter,
    gear_tip_diameter,
)


def test_a_module_2_gear_of_20_teeth_has_the_standard_circles() -> None:
    p = parse_prompt("a spur gear 20 teeth module 2").params
    assert gear_pitch_diameter(p) == 40
    assert gear_tip_diameter(p) == 44  # one module above the pitch circle
    assert gear_root_diameter(p) == 35  # 1.25 modules below it
    assert gear_base_diameter(p) == pytest.approx(40 * math.cos(math.radians(20)))
    assert GEAR_PRESSURE_ANGLE_DEG == 20


@pytest.mark.parametrize("teeth", [6, 12, 20, 41, 42, 45, 120, 200])
def test_flank_points_lie_on_the_involute_of_the_base_circle(teeth: int) -> None:
    p = {"teeth": float(teeth), "module": 1.5}
    r_base = gear_base_diameter(p) / 2
    # The flank on the + side of a tooth centred at angle 0 starts on the base circle at
    # half the tooth's base thickness, and is traced by the end of a string unwound from
    # the base circle towards the tooth centre.
    start = gear_half_tooth_angle(p, r_base)
    on_involute = [(r, psi) for r, psi in gear_flank(p) if r >= r_base - 1e-9]
    assert len(on_involute) >= 10
    for radius, psi in on_involute:
        roll = math.sqrt(max(0.0, (radius / r_base) ** 2 - 1))
        touch = start - roll  # where the string leaves the base circle
        x = r_base * (math.cos(touch) - roll * math.sin(touch))
        y = r_base * (math.sin(touch) + roll * math.cos(touch))
        assert (radius * math.cos(psi), radius * math.sin(psi)) == pytest.approx((x, y), abs=1e-9)


@pytest.mark.parametrize("teeth", [6, 20, 200])
def test_flanks_run_from_the_root_to_the_tip_circle(teeth: int) -> None:
    p = {"teeth": float(teeth), "module": 2.0}
    flank = gear_flank(p)
    assert flank[0][0] == pytest.approx(gear_root_diameter(p) / 2)
    assert flank[-1][0] == pytest.approx(gear_tip_diameter(p) / 2)
    assert [r for r, _ in flank] == sorted(r for r, _ in flank)
    if gear_root_diameter(p) < gear_base_diameter(p):  # below the base circle: radial
        assert flank[0][1] == pytest.approx(flank[1][1])
    # Teeth narrow towards the tip but keep a land, and gaps stay open at the root.
    assert 0 < flank[-1][1] < flank[0][1] < math.pi / teeth


def test_at_the_pitch_circle_a_tooth_is_half_the_circular_pitch_so_gears_of_a_module_mesh() -> None:
    for teeth in (8, 20, 57):
        p = {"teeth": float(teeth), "module": 2.5}
        r_pitch = gear_pitch_diameter(p) / 2
        thickness = 2 * gear_half_tooth_angle(p, r_pitch) * r_pitch  # arc length
        assert thickness == pytest.approx(math.pi * p["module"] / 2)
