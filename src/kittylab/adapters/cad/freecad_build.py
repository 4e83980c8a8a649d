"""The part library in FreeCAD's Part workbench; run by ``freecadcmd`` (FreeCAD's own
Python), never imported by KittyLab itself.

``KITTYLAB_FREECAD_REQUEST`` names a JSON file ``{"spec": …, "out_dir": …, "src": …}``;
``src`` is put on ``sys.path`` so the specification is re-read and checked by KittyLab's
pure domain code (``PartSpec.from_json``) and shares its geometry helpers. The answer is
written to ``<out_dir>/result.json``: ``{"ok": true, "bbox": […], "valid": …, "volume": …}``
or ``{"ok": false, "error": …}``. The geometry mirrors ``families.py`` (CadQuery): same
orientation, same extents.
"""

# mypy: ignore-errors
# ruff: noqa: N806
from __future__ import annotations

import json
import math
import os
import sys
import traceback
from pathlib import Path


def main() -> None:
    request = json.loads(Path(os.environ["KITTYLAB_FREECAD_REQUEST"]).read_text())
    out_dir = Path(request["out_dir"])
    sys.path.insert(0, request["src"])
    try:
        result = _build(request["spec"], out_dir)
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        traceback.print_exc()
    (out_dir / "result.json").write_text(json.dumps(result))


def _build(raw_spec: dict, out_dir: Path) -> dict:
    import FreeCAD
    import MeshPart
    import Part

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

    V = FreeCAD.Vector
    spec = PartSpec.from_json(raw_spec)
    p = spec.params

    def vertical_edges(shape):
        return [
            e
            for e in shape.Edges
            if isinstance(e.Curve, Part.Line)
            and abs(e.Vertexes[0].Point.x - e.Vertexes[1].Point.x) < 1e-9
            and abs(e.Vertexes[0].Point.y - e.Vertexes[1].Point.y) < 1e-9
        ]

    def plate():
        L, W, T = p["length"], p["width"], p["thickness"]
        body = Part.makeBox(L, W, T, V(-L / 2, -W / 2, 0))
        if p["fillet"] > 0:
            body = body.makeFillet(p["fillet"], vertical_edges(body))
        for x, y in hole_centres(p):
            body = body.cut(Part.makeCylinder(p["hole_diameter"] / 2, T + 2, V(x, y, -1)))
        return body

    def cylinder():
        body = Part.makeCylinder(p["diameter"] / 2, p["length"])
        if p["fillet"] > 0:
            circles = [e for e in body.Edges if isinstance(e.Curve, Part.Circle)]
            body = body.makeFillet(p["fillet"], circles)
        return body

    def ring(outer, inner, height):
        body = Part.makeCylinder(outer / 2, height)
        if inner > 0:
            body = body.cut(Part.makeCylinder(inner / 2, height + 2, V(0, 0, -1)))
        return body

    def profile(points, width):
        wire = Part.makePolygon(
            [V(x, 0, z) for x, z in points] + [V(points[0][0], 0, points[0][1])]
        )
        return Part.Face(wire).extrude(V(0, width, 0))

    def bracket():
        L, W, H, t = p["length"], p["width"], p["height"], p["thickness"]
        body = profile([(0, 0), (L, 0), (L, t), (t, t), (t, H), (0, H)], W)
        if p["fillet"] > 0:
            corner = V(t, W / 2, t)
            edge = min(
                (e for e in body.Edges if isinstance(e.Curve, Part.Line)),
                key=lambda e: e.distToShape(Part.Vertex(corner))[0],
            )
            body = body.makeFillet(p["fillet"], [edge])
        count = int(p["hole_count"])
        if count:
            r = p["hole_diameter"] / 2
            ys = [W / 2] if count == 1 else [W / 4, 3 * W / 4]
            for y in ys:
                body = body.cut(Part.makeCylinder(r, t + 2, V(t + (L - t) / 2, y, -1), V(0, 0, 1)))
                body = body.cut(Part.makeCylinder(r, t + 2, V(-1, y, t + (H - t) / 2), V(1, 0, 0)))
        return body

    def enclosure():
        L, W, H, wall = p["length"], p["width"], p["height"], p["wall"]
        box = Part.makeBox(L, W, H, V(-L / 2, -W / 2, 0))
        if p["fillet"] > 0:
            box = box.makeFillet(p["fillet"], vertical_edges(box))
        top = max(box.Faces, key=lambda f: f.CenterOfMass.z)
        box = box.makeThickness([top], -wall, 1e-3)
        if not p["lid"]:
            return box
        lid_x = L + LID_GAP_MM
        lid = Part.makeBox(L, W, wall, V(lid_x - L / 2, -W / 2, 0))
        if p["fillet"] > 0:
            lid = lid.makeFillet(p["fillet"], vertical_edges(lid))
        lip_h = min(3.0, H - wall)
        ll, lw = L - 2 * wall - 0.4, W - 2 * wall - 0.4
        lip = Part.makeBox(ll, lw, lip_h, V(lid_x - ll / 2, -lw / 2, wall))
        if min(ll, lw) - 2 * wall > 2:
            il, iw = ll - 2 * wall, lw - 2 * wall
            lip = lip.cut(Part.makeBox(il, iw, lip_h + 2, V(lid_x - il / 2, -iw / 2, wall - 1)))
        lid = lid.fuse(lip).removeSplitter()
        return Part.makeCompound([box, lid])

    def hook():
        W, D, H, t = p["width"], p["depth"], p["height"], p["thickness"]
        tip = max(2 * t, 0.3 * H)
        body = profile(
            [(0, 0), (D, 0), (D, tip), (D - t, tip), (D - t, t), (t, t), (t, H), (0, H)], W
        )
        if p["hole_diameter"] > 0:
            z = t + 0.75 * (H - t)
            body = body.cut(
                Part.makeCylinder(p["hole_diameter"] / 2, t + 2, V(-1, W / 2, z), V(1, 0, 0))
            )
        return body

    def phone_stand():
        W, D, H, t = p["width"], p["depth"], p["height"], p["thickness"]
        horizontal = t / math.sin(math.radians(p["angle"]))
        foot = phone_stand_rest_foot(p)
        lip = min(15.0, H / 3)
        base = profile([(0, 0), (D, 0), (D, t), (0, t)], W)
        front = profile([(0, 0), (t, 0), (t, lip), (0, lip)], W)
        rest = profile([(foot, 0), (foot + horizontal, 0), (D, H), (D - horizontal, H)], W)
        return base.fuse([front, rest]).removeSplitter()

    def gear():
        # Involute teeth, as in families.py: a spline through gear_flank's points on each
        # flank (a radial line below the base circle), tip and root arcs between them.
        teeth = int(p["teeth"])
        r_tip, r_root = gear_tip_diameter(p) / 2, gear_root_diameter(p) / 2
        pitch = 2 * math.pi / teeth
        flank = gear_flank(p)
        undercut = flank[0][0] < flank[1][0] and math.isclose(flank[0][1], flank[1][1])

        def at(r, a):
            return V(r * math.cos(a), r * math.sin(a), 0)

        def spline(points):
            curve = Part.BSplineCurve()
            curve.interpolate(points)
            return curve.toShape()

        def side(c, sign):
            points = [at(r, c + sign * h) for r, h in flank]
            if sign > 0:
                points.reverse()
            if not undercut:
                return [spline(points)]
            if sign < 0:
                return [Part.LineSegment(points[0], points[1]).toShape(), spline(points[1:])]
            return [spline(points[:-1]), Part.LineSegment(points[-2], points[-1]).toShape()]

        edges = []
        for k in range(teeth):
            c = k * pitch
            left, right = side(c, -1), side(c, 1)
            edges += left
            tip_start, tip_end = left[-1].Vertexes[-1].Point, right[0].Vertexes[0].Point
            edges.append(Part.Arc(tip_start, at(r_tip, c), tip_end).toShape())
            edges += right
            following = at(r_root, (k + 1) * pitch - flank[0][1])
            if k + 1 == teeth:
                following = edges[0].Vertexes[0].Point
            root_start = right[-1].Vertexes[-1].Point
            edges.append(Part.Arc(root_start, at(r_root, c + pitch / 2), following).toShape())
        body = Part.Face(Part.Wire(edges)).extrude(V(0, 0, p["thickness"]))
        if p["bore"] > 0:
            body = body.cut(Part.makeCylinder(p["bore"] / 2, p["thickness"] + 2, V(0, 0, -1)))
        return body

    builders = {
        Family.BLOCK: plate,
        Family.MOUNTING_PLATE: plate,
        Family.CYLINDER: cylinder,
        Family.SPACER: lambda: ring(p["outer_diameter"], p["inner_diameter"], p["length"]),
        Family.TUBE: lambda: ring(p["outer_diameter"], p["inner_diameter"], p["length"]),
        Family.WASHER: lambda: ring(p["outer_diameter"], p["inner_diameter"], p["thickness"]),
        Family.L_BRACKET: bracket,
        Family.ENCLOSURE: enclosure,
        Family.HOOK: hook,
        Family.PHONE_STAND: phone_stand,
        Family.SPUR_GEAR: gear,
    }
    shape = builders[spec.family]()
    box = shape.optimalBoundingBox() if hasattr(shape, "optimalBoundingBox") else shape.BoundBox
    out_dir.mkdir(parents=True, exist_ok=True)
    step, stl = out_dir / "part.step", out_dir / "part.stl"
    shape.exportStep(str(step))
    mesh = MeshPart.meshFromShape(Shape=shape, LinearDeflection=0.01, AngularDeflection=0.1)
    mesh.write(str(stl))
    return {
        "ok": True,
        "step": str(step),
        "stl": str(stl),
        "bbox": [round(box.XLength, 6), round(box.YLength, 6), round(box.ZLength, 6)],
        "valid": bool(shape.isValid()),
        "volume": round(float(shape.Volume), 6),
        "solids": len(shape.Solids),
        "version": ".".join(str(part) for part in FreeCAD.Version()[:3]),
    }


main()
