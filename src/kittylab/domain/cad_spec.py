"""Part specifications: what a CAD provider is asked to build, in millimetres.

A ``PartSpec`` names a family from the part library and its parameters. It is plain data
(it crosses into the model-building subprocess as JSON), carries which parameters were
filled from defaults so callers can report them back, and knows the bounding box the built
part must have. ``check`` enforces the geometric rules (positive, bounded, an inner
diameter smaller than the outer, holes that fit) with ``ValidationFailed`` naming the
parameter as ``spec.<name>``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kittylab.domain.errors import ValidationFailed

MAX_DIMENSION_MM = 1000.0
"""Largest extent accepted: bigger than any machine in the lab, far below "10 m"."""
MIN_FEATURE_MM = 0.2
"""Thinnest wall, plate or hole: below a printer nozzle's reach."""

# ISO 273 medium-fit clearance holes, by metric thread.
CLEARANCE_HOLES_MM: Mapping[str, float] = {
    "M2": 2.4,
    "M2.5": 2.9,
    "M3": 3.4,
    "M4": 4.5,
    "M5": 5.5,
    "M6": 6.6,
    "M8": 9.0,
    "M10": 11.0,
}


class Family(StrEnum):
    BLOCK = "block"
    MOUNTING_PLATE = "mounting_plate"
    CYLINDER = "cylinder"
    SPACER = "spacer"
    WASHER = "washer"
    TUBE = "tube"
    L_BRACKET = "l_bracket"
    ENCLOSURE = "enclosure"
    HOOK = "hook"
    PHONE_STAND = "phone_stand"
    SPUR_GEAR = "spur_gear"


# Parameters each family takes, with defaults in mm (counts and angles as they are).
# Order matters: it is the order in which bare numbers ("60 by 40 by 5") are assigned.
FAMILY_PARAMETERS: Mapping[Family, Mapping[str, float]] = {
    Family.BLOCK: {
        "length": 50.0,
        "width": 30.0,
        "thickness": 10.0,
        "hole_count": 0.0,
        "hole_diameter": 4.5,
        "hole_inset": 6.0,
        "hole_spacing_x": 0.0,
        "hole_spacing_y": 0.0,
        "fillet": 0.0,
    },
    Family.MOUNTING_PLATE: {
        "length": 80.0,
        "width": 60.0,
        "thickness": 4.0,
        "hole_count": 4.0,
        "hole_diameter": 4.5,
        "hole_inset": 6.0,
        "hole_spacing_x": 0.0,
        "hole_spacing_y": 0.0,
        "fillet": 0.0,
    },
    Family.CYLINDER: {"diameter": 20.0, "length": 50.0, "fillet": 0.0},
    Family.SPACER: {"outer_diameter": 8.0, "inner_diameter": 3.4, "length": 10.0},
    Family.WASHER: {"outer_diameter": 20.0, "inner_diameter": 0.0, "thickness": 2.0},
    Family.TUBE: {"outer_diameter": 20.0, "inner_diameter": 16.0, "length": 100.0},
    Family.L_BRACKET: {
        "length": 40.0,
        "width": 20.0,
        "height": 40.0,
        "thickness": 4.0,
        "hole_count": 0.0,
        "hole_diameter": 4.5,
        "fillet": 0.0,
    },
    Family.ENCLOSURE: {
        "length": 100.0,
        "width": 60.0,
        "height": 40.0,
        "wall": 2.0,
        "lid": 0.0,
        "fillet": 0.0,
    },
    Family.HOOK: {
        "width": 15.0,
        "depth": 30.0,
        "height": 60.0,
        "thickness": 5.0,
        "hole_diameter": 4.5,
    },
    Family.PHONE_STAND: {
        "width": 70.0,
        "depth": 90.0,
        "height": 110.0,
        "thickness": 5.0,
        "angle": 65.0,
    },
    Family.SPUR_GEAR: {
        "teeth": 20.0,
        "module": 2.0,
        "thickness": 8.0,
        "bore": 5.0,
    },
}

COUNT_PARAMETERS = frozenset({"hole_count", "teeth"})
FLAG_PARAMETERS = frozenset({"lid"})
ANGLE_PARAMETERS = frozenset({"angle"})
LID_GAP_MM = 10.0
"""An enclosure's lid is built beside the box, this far from it, lying flat."""
LID_THICKNESS_FACTOR = 1.0
"""The lid is as thick as the walls."""


@dataclass(frozen=True)
class Reading:
    """A phrase of the prompt that reads two ways, and which way the spec follows.

    ``taken`` describes the reading the spec was built from, ``other`` the one it was not.
    ``other_params`` holds the parameters the other reading changes, and ``follow_up``
    words that ask for it as an iteration of the job ("angle 60"); both are empty when
    the other reading makes an impossible part (it is then only explained, not offered).
    """

    phrase: str
    taken: str
    other: str
    other_params: Mapping[str, float] = field(default_factory=dict)
    follow_up: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "phrase": self.phrase,
            "taken": self.taken,
            "other": self.other,
            "otherParams": dict(self.other_params),
            "followUp": self.follow_up,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reading:
        return cls(
            phrase=str(data["phrase"]),
            taken=str(data["taken"]),
            other=str(data["other"]),
            other_params={str(k): float(v) for k, v in dict(data.get("otherParams", {})).items()},
            follow_up=str(data.get("followUp", "")),
        )


@dataclass(frozen=True)
class PartSpec:
    """A family and every one of its parameters (mm, counts, degrees, 0/1 flags)."""

    family: Family
    params: Mapping[str, float]
    defaults: tuple[str, ...] = ()
    """Parameters not stated in the prompt, filled from the family's defaults."""
    notes: tuple[str, ...] = field(default=())
    """What the parser interpreted (M4 → 4.5 mm clearance, inches converted …)."""
    readings: tuple[Reading, ...] = field(default=())
    """Phrases that read two ways: the reading taken and the other one, offered."""

    def __getitem__(self, name: str) -> float:
        return self.params[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family.value,
            "params": dict(self.params),
            "defaults": list(self.defaults),
            "notes": list(self.notes),
            "readings": [reading.to_json() for reading in self.readings],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartSpec:
        try:
            family = Family(data["family"])
            params = {str(k): float(v) for k, v in dict(data["params"]).items()}
            readings = tuple(Reading.from_json(r) for r in data.get("readings", ()))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ValidationFailed("spec", f"is not a part specification: {exc}") from None
        return build_spec(
            family,
            params,
            defaults=tuple(data.get("defaults", ())),
            notes=tuple(data.get("notes", ())),
            readings=readings,
        )

    def replace(self, **changes: float) -> PartSpec:
        """A checked copy with ``changes`` applied; changed parameters stop being defaults.
        The prompt's readings are dropped: the follow-up has said what it wants."""
        params = dict(self.params)
        params.update(changes)
        defaults = tuple(name for name in self.defaults if name not in changes)
        return build_spec(self.family, params, defaults=defaults, notes=self.notes)


def build_spec(
    family: Family,
    stated: Mapping[str, float],
    *,
    defaults: tuple[str, ...] | None = None,
    notes: tuple[str, ...] = (),
    readings: tuple[Reading, ...] = (),
) -> PartSpec:
    """A checked spec from the parameters ``stated``; the rest come from the family's
    defaults (listed in ``defaults`` unless given explicitly)."""
    known = FAMILY_PARAMETERS[family]
    unknown = sorted(set(stated) - set(known))
    if unknown:
        raise ValidationFailed(
            f"spec.{unknown[0]}", f"a {family.value.replace('_', ' ')} has no {unknown[0]}"
        )
    params = {name: round(float(stated.get(name, default)), 6) for name, default in known.items()}
    filled = tuple(name for name in known if name not in stated)
    spec = PartSpec(
        family=family,
        params=params,
        defaults=filled if defaults is None else defaults,
        notes=notes,
        readings=readings,
    )
    check(spec)
    return spec


def check(spec: PartSpec) -> None:
    """Raise ``ValidationFailed`` (field ``spec.<parameter>``) for a part that cannot exist."""
    p = spec.params
    for name, value in p.items():
        if not math.isfinite(value):
            raise ValidationFailed(f"spec.{name}", "must be a finite number")
        if name in COUNT_PARAMETERS:
            if value < 0 or value != int(value):
                raise ValidationFailed(f"spec.{name}", "must be a whole number, 0 or more")
        elif name in FLAG_PARAMETERS:
            if value not in (0.0, 1.0):
                raise ValidationFailed(f"spec.{name}", "must be 0 or 1")
        elif name in ANGLE_PARAMETERS:
            if not 30.0 <= value <= 85.0:
                raise ValidationFailed(f"spec.{name}", "must be between 30 and 85 degrees")
        elif value < 0 or (value == 0 and name not in _MAY_BE_ZERO):
            raise ValidationFailed(f"spec.{name}", f"must be more than 0 mm (got {value:g})")
        elif value > MAX_DIMENSION_MM:
            raise ValidationFailed(
                f"spec.{name}", f"{value:g} mm is over the {MAX_DIMENSION_MM:g} mm limit"
            )
        elif 0 < value < MIN_FEATURE_MM:
            raise ValidationFailed(
                f"spec.{name}", f"{value:g} mm is under the {MIN_FEATURE_MM:g} mm minimum"
            )
    _FAMILY_CHECKS[spec.family](p)
    for axis, extent in zip("xyz", expected_bbox(spec), strict=True):
        if extent > MAX_DIMENSION_MM:
            raise ValidationFailed(
                "spec", f"the part would be {extent:g} mm along {axis}, over the limit"
            )


_MAY_BE_ZERO = frozenset(
    {"fillet", "inner_diameter", "bore", "hole_diameter", "hole_spacing_x", "hole_spacing_y"}
)


def _need(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ValidationFailed(f"spec.{name}", message)


def hole_centres(p: Mapping[str, float]) -> list[tuple[float, float]]:
    """Hole centres of a plate, relative to its centre: one in the middle, two along the
    length, four in the corners, or six (two rows of three along the length); placed by
    the spacing when stated, else by the inset from the edges."""
    count = int(p.get("hole_count", 0))
    if count == 0:
        return []
    if count == 1:
        return [(0.0, 0.0)]
    sx = p.get("hole_spacing_x", 0.0) or p["length"] - 2 * p["hole_inset"]
    if count == 2:
        return [(-sx / 2, 0.0), (sx / 2, 0.0)]
    sy = p.get("hole_spacing_y", 0.0) or p["width"] - 2 * p["hole_inset"]
    columns = (-sx / 2, 0.0, sx / 2) if count == 6 else (-sx / 2, sx / 2)
    return [(x, y) for x in columns for y in (-sy / 2, sy / 2)]


def _check_holes(p: Mapping[str, float], span_x: float, span_y: float) -> None:
    count = int(p.get("hole_count", 0))
    if count == 0:
        return
    _need(
        count in (1, 2, 4, 6),
        "hole_count",
        "hole patterns are 1 (centre), 2, 4 (corners) or 6 (two rows of three)",
    )
    d = p["hole_diameter"]
    _need(d > 0, "hole_diameter", "must be more than 0 mm when there are holes")
    if count == 1:
        _need(d < min(span_x, span_y) - 2 * MIN_FEATURE_MM, "hole_diameter", "is too big")
        return
    centres = hole_centres(p)
    edge = d / 2 + MIN_FEATURE_MM
    for x, y in centres:
        _need(
            abs(x) + edge <= span_x / 2 and abs(y) + edge <= span_y / 2,
            "hole_inset" if not p.get("hole_spacing_x") else "hole_spacing_x",
            "puts the holes over the edge",
        )
    xs = sorted({x for x, _ in centres})
    ys = sorted({y for _, y in centres})
    _need(
        min(b - a for a, b in itertools.pairwise(xs)) > d,
        "hole_diameter",
        "the holes would overlap along the length",
    )
    if count >= 4:
        _need(ys[-1] - ys[0] > d, "hole_diameter", "the holes would overlap along the width")


def _check_block(p: Mapping[str, float]) -> None:
    _need(
        p["fillet"] < min(p["length"], p["width"]) / 2,
        "fillet",
        "must be less than half the shorter side",
    )
    _check_holes(p, p["length"], p["width"])
    if p["hole_count"] and p["fillet"]:
        # A hole in a corner's rounded zone (beyond the fillet arc's centre on both axes)
        # meets the edge at the arc, not at the straight sides the hole check measured:
        # it needs the arc's radius to exceed its distance from the arc centre by the
        # hole's radius and a minimum wall.
        fillet = p["fillet"]
        arc_x = p["length"] / 2 - fillet
        arc_y = p["width"] / 2 - fillet
        for x, y in hole_centres(p):
            if abs(x) <= arc_x or abs(y) <= arc_y:
                continue
            from_arc_centre = math.hypot(abs(x) - arc_x, abs(y) - arc_y)
            _need(
                fillet - from_arc_centre >= p["hole_diameter"] / 2 + MIN_FEATURE_MM,
                "fillet",
                "is so large that the rounded corners cut into the holes",
            )


def _check_cylinder(p: Mapping[str, float]) -> None:
    _need(p["fillet"] < p["diameter"] / 2, "fillet", "must be less than the radius")
    _need(p["fillet"] < p["length"] / 2, "fillet", "must be less than half the length")


def _check_ring(p: Mapping[str, float]) -> None:
    inner, outer = p["inner_diameter"], p["outer_diameter"]
    _need(
        inner < outer - 2 * MIN_FEATURE_MM,
        "inner_diameter",
        f"must be smaller than the outer diameter ({outer:g} mm) by at least two walls",
    )


def _check_tube(p: Mapping[str, float]) -> None:
    _need(p["inner_diameter"] > 0, "inner_diameter", "a tube needs a bore")
    _check_ring(p)


def _check_bracket(p: Mapping[str, float]) -> None:
    t = p["thickness"]
    _need(t < p["length"] and t < p["height"], "thickness", "must be less than both legs")
    _need(p["fillet"] < p["height"] - t, "fillet", "is larger than the vertical leg")
    count = int(p["hole_count"])
    _need(count in (0, 1, 2), "hole_count", "a bracket takes 0, 1 or 2 holes per leg")
    if count:
        d = p["hole_diameter"]
        _need(d > 0, "hole_diameter", "must be more than 0 mm when there are holes")
        _need(d < p["width"] - 2 * MIN_FEATURE_MM, "hole_diameter", "is wider than the bracket")
        _need(d < p["length"] - t - 2 * MIN_FEATURE_MM, "hole_diameter", "does not fit the leg")
        if count == 2:
            _need(2 * d < p["width"] - 3 * MIN_FEATURE_MM, "hole_diameter", "two do not fit")


def _check_enclosure(p: Mapping[str, float]) -> None:
    wall = p["wall"]
    _need(
        2 * wall < min(p["length"], p["width"]) - 1,
        "wall",
        "leaves no room inside (two walls must be narrower than the box)",
    )
    _need(wall < p["height"] - 1, "wall", "is thicker than the box is tall")
    _need(p["fillet"] < min(p["length"], p["width"]) / 2, "fillet", "is too large")


def _check_hook(p: Mapping[str, float]) -> None:
    t = p["thickness"]
    _need(p["depth"] > 2 * t + 2, "depth", "must leave a gap between the back and the tip")
    _need(p["height"] > 3 * t, "height", "must be more than three times the thickness")
    _need(p["hole_diameter"] < p["width"] - 2 * MIN_FEATURE_MM, "hole_diameter", "is too big")
    # The hole sits three quarters up the back; it must stay clear of the top.
    _need(
        p["hole_diameter"] < (p["height"] - t) / 2 - 2 * MIN_FEATURE_MM,
        "hole_diameter",
        "does not fit in the back of the hook",
    )


def _check_stand(p: Mapping[str, float]) -> None:
    t = p["thickness"]
    _need(p["height"] > 2 * t, "height", "must be more than twice the thickness")
    foot = phone_stand_rest_foot(p)
    _need(
        foot > 2 * t + 5,
        "depth",
        f"is too short for a {p['height']:g} mm back at {p['angle']:g}° "
        "(the back would reach the front lip)",
    )


def _check_gear(p: Mapping[str, float]) -> None:
    teeth = p["teeth"]
    _need(6 <= teeth <= 200, "teeth", "must be between 6 and 200")
    _need(0.3 <= p["module"] <= 10, "module", "must be between 0.3 and 10")
    root = gear_root_diameter(p)
    _need(p["bore"] < root - 4 * p["module"], "bore", "leaves no material under the teeth")


_FAMILY_CHECKS = {
    Family.BLOCK: _check_block,
    Family.MOUNTING_PLATE: _check_block,
    Family.CYLINDER: _check_cylinder,
    Family.SPACER: _check_ring,
    Family.WASHER: _check_ring,
    Family.TUBE: _check_tube,
    Family.L_BRACKET: _check_bracket,
    Family.ENCLOSURE: _check_enclosure,
    Family.HOOK: _check_hook,
    Family.PHONE_STAND: _check_stand,
    Family.SPUR_GEAR: _check_gear,
}


def phone_stand_rest_foot(p: Mapping[str, float]) -> float:
    """Where the slanted back meets the base, measured from the front (x = 0)."""
    angle = math.radians(p["angle"])
    horizontal_thickness = p["thickness"] / math.sin(angle)
    return p["depth"] - p["height"] / math.tan(angle) - horizontal_thickness


GEAR_PRESSURE_ANGLE_DEG = 20.0
"""The standard pressure angle (ISO 53): teeth of one module mesh with each other."""
GEAR_FLANK_SEGMENTS = 10
"""Straight segments each involute flank is drawn with, between points on the involute."""


def gear_tip_diameter(p: Mapping[str, float]) -> float:
    """Addendum circle: one module above the pitch circle."""
    return p["module"] * (p["teeth"] + 2)


def gear_root_diameter(p: Mapping[str, float]) -> float:
    """Dedendum circle: 1.25 modules below the pitch circle."""
    return p["module"] * (p["teeth"] - 2.5)


def gear_pitch_diameter(p: Mapping[str, float]) -> float:
    return p["module"] * p["teeth"]


def gear_base_diameter(p: Mapping[str, float]) -> float:
    """The circle the flanks' involutes unwind from."""
    return gear_pitch_diameter(p) * math.cos(math.radians(GEAR_PRESSURE_ANGLE_DEG))


def involute(angle: float) -> float:
    """inv(a) = tan(a) - a: the polar angle an involute has turned through where its
    pressure angle is ``a`` (radians)."""
    return math.tan(angle) - angle


def gear_half_tooth_angle(p: Mapping[str, float], radius: float) -> float:
    """Half a tooth's angular thickness (radians) at ``radius`` (not below the base circle):
    pi/(2z) + inv(alpha) - inv(alpha_r), with alpha_r = arccos(r_base / r). At the pitch
    circle a tooth is half the circular pitch thick (no backlash, no profile shift)."""
    r_base = gear_base_diameter(p) / 2
    alpha = math.radians(GEAR_PRESSURE_ANGLE_DEG)
    alpha_r = math.acos(min(1.0, r_base / radius))
    return math.pi / (2 * p["teeth"]) + involute(alpha) - involute(alpha_r)


def gear_tip_half_angle(p: Mapping[str, float]) -> float:
    """Half the angle a tooth's tip land spans (radians)."""
    return gear_half_tooth_angle(p, gear_tip_diameter(p) / 2)


def gear_flank(p: Mapping[str, float]) -> list[tuple[float, float]]:
    """One flank of a tooth as polar points ``(radius, half-angle)`` from the root circle to
    the tip circle: the tooth centred at angle c has its flanks at c - half-angle and
    c + half-angle. Points on the involute are spread evenly in roll angle (denser near
    the base circle, where it curves most); where the root circle lies inside the base
    circle (fewer than 42 teeth) the flank runs radially from the root to the base circle,
    the usual simplification of the generated undercut."""
    r_base = gear_base_diameter(p) / 2
    r_root = gear_root_diameter(p) / 2
    r_tip = gear_tip_diameter(p) / 2
    start = max(r_base, r_root)
    roll_start = math.sqrt(max(0.0, (start / r_base) ** 2 - 1))
    roll_tip = math.sqrt((r_tip / r_base) ** 2 - 1)
    points: list[tuple[float, float]] = []
    if r_root < r_base:
        points.append((r_root, gear_half_tooth_angle(p, r_base)))
    for i in range(GEAR_FLANK_SEGMENTS + 1):
        roll = roll_start + (roll_tip - roll_start) * i / GEAR_FLANK_SEGMENTS
        radius = r_tip if i == GEAR_FLANK_SEGMENTS else r_base * math.sqrt(1 + roll * roll)
        points.append((radius, gear_half_tooth_angle(p, radius)))
    return points


def _gear_reach(p: Mapping[str, float], direction: float) -> float:
    """How far the gear reaches from its axis towards ``direction`` (radians): the
    farthest of the tip arcs (tooth k centred at 2πk/z, ± the tip half-angle) and the
    flank points (the flanks are straight between them, so a vertex is the farthest point
    of each segment); the root circle bounds it from below."""
    r_tip = gear_tip_diameter(p) / 2
    half = gear_tip_half_angle(p)
    flank = gear_flank(p)
    teeth = int(p["teeth"])
    best = gear_root_diameter(p) / 2
    for k in range(teeth):
        centre = 2 * math.pi * k / teeth
        offset = math.remainder(direction - centre, 2 * math.pi)
        if abs(offset) <= half + 1e-12:
            return r_tip
        for radius, psi in flank:
            best = max(best, radius * math.cos(abs(offset) - psi))
    return best


def expected_bbox(spec: PartSpec) -> tuple[float, float, float]:
    """The built part's extents along x, y and z (mm), as the part library orients it."""
    p = spec.params
    match spec.family:
        case Family.BLOCK | Family.MOUNTING_PLATE:
            return (p["length"], p["width"], p["thickness"])
        case Family.CYLINDER:
            return (p["diameter"], p["diameter"], p["length"])
        case Family.SPACER | Family.TUBE:
            return (p["outer_diameter"], p["outer_diameter"], p["length"])
        case Family.WASHER:
            return (p["outer_diameter"], p["outer_diameter"], p["thickness"])
        case Family.L_BRACKET:
            return (p["length"], p["width"], p["height"])
        case Family.ENCLOSURE:
            if p["lid"]:
                return (2 * p["length"] + LID_GAP_MM, p["width"], p["height"])
            return (p["length"], p["width"], p["height"])
        case Family.HOOK:
            return (p["depth"], p["width"], p["height"])
        case Family.PHONE_STAND:
            return (p["depth"], p["width"], p["height"])
        case Family.SPUR_GEAR:
            return (
                _gear_reach(p, 0.0) + _gear_reach(p, math.pi),
                _gear_reach(p, math.pi / 2) + _gear_reach(p, 3 * math.pi / 2),
                p["thickness"],
            )
    raise AssertionError(spec.family)  # pragma: no cover - the match is exhaustive
