"""The part library: one parametric CadQuery model per family.

Imported only inside the model-building worker process (``worker_main``): CadQuery and
OpenCascade take seconds to import and a bad model must not take the service down.
Every builder returns one solid (or a compound of solids: an enclosure and its lid) whose
extents are exactly ``kittylab.domain.cad_spec.expected_bbox(spec)``: centred on the z
axis (boxes, discs) or starting at x = 0 (profiles), lying on z = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import cadquery as cq

from kittylab.domain.cad_spec import (
    LID_GAP_MM,
    Family,
    PartSpec,
    gear_flank,
    gear_root_diameter,
    gear_tip_diameter,
    hole_centres,
    phone_stand_rest_foot,
)

Params = Mapping[str, float]


def build(spec: PartSpec) -> cq.Workplane:
    return _BUILDERS[spec.family](spec.params)


def _plate(p: Params) -> cq.Workplane:
    body = cq.Workplane("XY").box(
        p["length"], p["width"], p["thickness"], centered=(True, True, False)
    )
    if p["fillet"] > 0:
        body = body.edges("|Z").fillet(p["fillet"])
    centres = hole_centres(p)
    if centres:
        body = (
            body.faces(">Z")
            .workplane(origin=(0, 0, p["thickness"]))
            .pushPoints(centres)
            .hole(p["hole_diameter"])
        )
    return body


def _cylinder(p: Params) -> cq.Workplane:
    body = cq.Workplane("XY").circle(p["diameter"] / 2).extrude(p["length"])
    if p["fillet"] > 0:
        body = body.edges().fillet(p["fillet"])
    return body


def _ring(outer: float, inner: float, height: float) -> cq.Workplane:
    sketch = cq.Workplane("XY").circle(outer / 2)
    if inner > 0:
        sketch = sketch.circle(inner / 2)
    return sketch.extrude(height)


def _spacer(p: Params) -> cq.Workplane:
    return _ring(p["outer_diameter"], p["inner_diameter"], p["length"])


def _washer(p: Params) -> cq.Workplane:
    return _ring(p["outer_diameter"], p["inner_diameter"], p["thickness"])


def _profile(points: list[tuple[float, float]], width: float) -> cq.Workplane:
    """A closed x/z profile extruded ``width`` along +y (from y = 0)."""
    solid = cq.Workplane("XZ").polyline(points).close().extrude(-width)
    return solid


def _bracket(p: Params) -> cq.Workplane:
    length, width, height, t = p["length"], p["width"], p["height"], p["thickness"]
    body = _profile([(0, 0), (length, 0), (length, t), (t, t), (t, height), (0, height)], width)
    if p["fillet"] > 0:
        inner_corner = cq.selectors.NearestToPointSelector((t, width / 2, t))  # type: ignore[no-untyped-call]
        body = body.edges(inner_corner).fillet(p["fillet"])
    count = int(p["hole_count"])
    if count:
        radius = p["hole_diameter"] / 2
        ys = [width / 2] if count == 1 else [width / 4, 3 * width / 4]
        x_centre = t + (length - t) / 2
        z_centre = t + (height - t) / 2
        for y in ys:
            down = cq.Solid.makeCylinder(
                radius, t + 2, cq.Vector(x_centre, y, -1), cq.Vector(0, 0, 1)
            )
            across = cq.Solid.makeCylinder(
                radius, t + 2, cq.Vector(-1, y, z_centre), cq.Vector(1, 0, 0)
            )
            body = body.cut(down).cut(across)
    return body


def _enclosure(p: Params) -> cq.Workplane:
    length, width, height, wall = p["length"], p["width"], p["height"], p["wall"]
    box = cq.Workplane("XY").box(length, width, height, centered=(True, True, False))
    if p["fillet"] > 0:
        box = box.edges("|Z").fillet(p["fillet"])
    box = box.faces(">Z").shell(-wall)
    if not p["lid"]:
        return box
    # The lid lies flat beside the box, its locating lip pointing up (print orientation).
    lid_x = length + LID_GAP_MM
    lid = cq.Workplane("XY").center(lid_x, 0).box(length, width, wall, centered=(True, True, False))
    if p["fillet"] > 0:
        lid = lid.edges("|Z").fillet(p["fillet"])
    lip_height = min(3.0, height - wall)
    clearance = 0.4
    lip_length = length - 2 * wall - clearance
    lip_width = width - 2 * wall - clearance
    lip = cq.Workplane("XY").workplane(offset=wall).center(lid_x, 0).rect(lip_length, lip_width)
    if min(lip_length, lip_width) - 2 * wall > 2:
        lip = lip.rect(lip_length - 2 * wall, lip_width - 2 * wall)
    lid = lid.union(lip.extrude(lip_height))
    parts = [box.findSolid(), lid.findSolid()]
    return cq.Workplane("XY").newObject([cq.Compound.makeCompound(parts)])


def _hook(p: Params) -> cq.Workplane:
    width, depth, height, t = p["width"], p["depth"], p["height"], p["thickness"]
    tip = max(2 * t, 0.3 * height)
    body = _profile(
        [
            (0, 0),
            (depth, 0),
            (depth, tip),
            (depth - t, tip),
            (depth - t, t),
            (t, t),
            (t, height),
            (0, height),
        ],
        width,
    )
    if p["hole_diameter"] > 0:
        z = t + 0.75 * (height - t)
        hole = cq.Solid.makeCylinder(
            p["hole_diameter"] / 2, t + 2, cq.Vector(-1, width / 2, z), cq.Vector(1, 0, 0)
        )
        body = body.cut(hole)
    return body


def _phone_stand(p: Params) -> cq.Workplane:
    width, depth, height, t = p["width"], p["depth"], p["height"], p["thickness"]
    angle = math.radians(p["angle"])
    horizontal = t / math.sin(angle)
    foot = phone_stand_rest_foot(p)
    lip = min(15.0, height / 3)
    base = _profile([(0, 0), (depth, 0), (depth, t), (0, t)], width)
    front = _profile([(0, 0), (t, 0), (t, lip), (0, lip)], width)
    rest = _profile(
        [(foot, 0), (foot + horizontal, 0), (depth, height), (depth - horizontal, height)], width
    )
    return base.union(front).union(rest)


def _gear(p: Params) -> cq.Workplane:
    """Involute teeth (``gear_flank``): each flank is a spline through points on the
    involute (a radial line below the base circle, where there is one), joined by a tip
    arc and, to the next tooth, a root arc. The outline is assembled from edges directly:
    a Workplane chain over every tooth is slow and, for 200 teeth, deeper than Python's
    recursion limit."""
    teeth = int(p["teeth"])
    r_tip = gear_tip_diameter(p) / 2
    r_root = gear_root_diameter(p) / 2
    pitch = 2 * math.pi / teeth
    flank = gear_flank(p)
    undercut = flank[0][0] < flank[1][0] and math.isclose(flank[0][1], flank[1][1])

    def at(radius: float, angle: float) -> cq.Vector:
        return cq.Vector(radius * math.cos(angle), radius * math.sin(angle), 0)

    def side(centre: float, sign: int) -> list[cq.Edge]:
        """One flank on the ``sign`` side of the tooth centre, in the outline's direction:
        from the root up on the trailing side (-1), from the tip down on the leading side
        (+1)."""
        points = [at(radius, centre + sign * half) for radius, half in flank]
        if sign > 0:
            points.reverse()
        if not undercut:
            return [cq.Edge.makeSpline(points)]
        if sign < 0:
            return [cq.Edge.makeLine(points[0], points[1]), cq.Edge.makeSpline(points[1:])]
        return [cq.Edge.makeSpline(points[:-1]), cq.Edge.makeLine(points[-2], points[-1])]

    edges: list[cq.Edge] = []
    for k in range(teeth):
        centre = k * pitch
        left = side(centre, -1)
        right = side(centre, 1)
        edges += left
        edges.append(
            cq.Edge.makeThreePointArc(left[-1].endPoint(), at(r_tip, centre), right[0].startPoint())
        )
        edges += right
        following = at(r_root, (k + 1) * pitch - flank[0][1])
        if k + 1 == teeth:
            following = edges[0].startPoint()  # close exactly where the outline began
        edges.append(
            cq.Edge.makeThreePointArc(
                right[-1].endPoint(), at(r_root, centre + pitch / 2), following
            )
        )
    face = cq.Face.makeFromWires(cq.Wire.assembleEdges(edges))
    body = cq.Workplane("XY").add(cq.Solid.extrudeLinear(face, cq.Vector(0, 0, p["thickness"])))
    if p["bore"] > 0:
        body = body.faces(">Z").workplane().hole(p["bore"])
    return body


_BUILDERS: Mapping[Family, Callable[[Params], cq.Workplane]] = {
    Family.BLOCK: _plate,
    Family.MOUNTING_PLATE: _plate,
    Family.CYLINDER: _cylinder,
    Family.SPACER: _spacer,
    Family.WASHER: _washer,
    Family.TUBE: _spacer,
    Family.L_BRACKET: _bracket,
    Family.ENCLOSURE: _enclosure,
    Family.HOOK: _hook,
    Family.PHONE_STAND: _phone_stand,
    Family.SPUR_GEAR: _gear,
}
