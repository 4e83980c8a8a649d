"""Write a box as a STEP file (ISO 10303-21, AP214 B-rep) without any CAD kernel, so slicer
tests can feed PrusaSlicer real STEP input. Six planar faces, twelve line edges."""

from __future__ import annotations

from itertools import count

# Corner i sits at (i & 1, i >> 1 & 1, i >> 2 & 1) times the size. Each face lists its
# corners counter-clockwise seen from outside, so every face normal points outwards.
_FACES = {
    (0.0, 0.0, -1.0): (0, 2, 3, 1),
    (0.0, 0.0, 1.0): (4, 5, 7, 6),
    (0.0, -1.0, 0.0): (0, 1, 5, 4),
    (0.0, 1.0, 0.0): (2, 6, 7, 3),
    (-1.0, 0.0, 0.0): (0, 4, 6, 2),
    (1.0, 0.0, 0.0): (1, 3, 7, 5),
}


def box_step(x: float, y: float, z: float, name: str = "box") -> str:
    ids = count(1)
    lines: list[str] = []

    def add(entity: str) -> str:
        ref = f"#{next(ids)}"
        lines.append(f"{ref} = {entity};")
        return ref

    def point(p: tuple[float, float, float]) -> str:
        return add(f"CARTESIAN_POINT('',({p[0]:.6f},{p[1]:.6f},{p[2]:.6f}))")

    def direction(d: tuple[float, float, float]) -> str:
        return add(f"DIRECTION('',({d[0]:.6f},{d[1]:.6f},{d[2]:.6f}))")

    corners = [((i & 1) * x, (i >> 1 & 1) * y, (i >> 2 & 1) * z) for i in range(8)]
    vertices = [add(f"VERTEX_POINT('',{point(c)})") for c in corners]
    edges: dict[tuple[int, int], str] = {}
    for loop in _FACES.values():
        for a, b in zip(loop, loop[1:] + loop[:1], strict=True):
            start, end = min(a, b), max(a, b)
            if (start, end) in edges:
                continue
            delta = tuple(e - s for s, e in zip(corners[start], corners[end], strict=True))
            length = max(abs(v) for v in delta)
            unit = tuple(v / length for v in delta)
            vector = add(f"VECTOR('',{direction(unit)},{length:.6f})")  # type: ignore[arg-type]
            line = add(f"LINE('',{point(corners[start])},{vector})")
            edges[(start, end)] = add(
                f"EDGE_CURVE('',{vertices[start]},{vertices[end]},{line},.T.)"
            )
    faces = []
    for normal, loop in _FACES.items():
        oriented = []
        for a, b in zip(loop, loop[1:] + loop[:1], strict=True):
            edge = edges[(min(a, b), max(a, b))]
            oriented.append(add(f"ORIENTED_EDGE('',*,*,{edge},{'.T.' if a < b else '.F.'})"))
        edge_loop = add(f"EDGE_LOOP('',({','.join(oriented)}))")
        bound = add(f"FACE_OUTER_BOUND('',{edge_loop},.T.)")
        reference = tuple(e - s for s, e in zip(corners[loop[0]], corners[loop[1]], strict=True))
        ref_unit = tuple(v / max(abs(c) for c in reference) for v in reference)
        axis = add(
            f"AXIS2_PLACEMENT_3D('',{point(corners[loop[0]])},{direction(normal)},"
            f"{direction(ref_unit)})"  # type: ignore[arg-type]
        )
        plane = add(f"PLANE('',{axis})")
        faces.append(add(f"ADVANCED_FACE('',({bound}),{plane},.T.)"))
    shell = add(f"CLOSED_SHELL('',({','.join(faces)}))")
    solid = add(f"MANIFOLD_SOLID_BREP('{name}',{shell})")

    length_unit = add("( LENGTH_UNIT() NAMED_UNIT(*) SI_UNIT(.MILLI.,.METRE.) )")
    angle_unit = add("( NAMED_UNIT(*) PLANE_ANGLE_UNIT() SI_UNIT($,.RADIAN.) )")
    solid_angle_unit = add("( NAMED_UNIT(*) SI_UNIT($,.STERADIAN.) SOLID_ANGLE_UNIT() )")
    uncertainty = add(
        f"UNCERTAINTY_MEASURE_WITH_UNIT(LENGTH_MEASURE(1.E-07),{length_unit},"
        "'distance_accuracy_value','confusion accuracy')"
    )
    context = add(
        "( GEOMETRIC_REPRESENTATION_CONTEXT(3) "
        f"GLOBAL_UNCERTAINTY_ASSIGNED_CONTEXT(({uncertainty})) "
        f"GLOBAL_UNIT_ASSIGNED_CONTEXT(({length_unit},{angle_unit},{solid_angle_unit})) "
        "REPRESENTATION_CONTEXT('Context #1','3D Context with UNIT and UNCERTAINTY') )"
    )
    origin = add(
        f"AXIS2_PLACEMENT_3D('',{point((0.0, 0.0, 0.0))},{direction((0.0, 0.0, 1.0))},"
        f"{direction((1.0, 0.0, 0.0))})"
    )
    shape = add(f"ADVANCED_BREP_SHAPE_REPRESENTATION('',({origin},{solid}),{context})")
    application = add("APPLICATION_CONTEXT('automotive design')")
    add(
        f"APPLICATION_PROTOCOL_DEFINITION('international standard','automotive_design',2000,{application})"
    )
    product_context = add(f"PRODUCT_CONTEXT('',{application},'mechanical')")
    product = add(f"PRODUCT('{name}','{name}','',({product_context}))")
    formation = add(f"PRODUCT_DEFINITION_FORMATION('','',{product})")
    definition_context = add(
        f"PRODUCT_DEFINITION_CONTEXT('part definition',{application},'design')"
    )
    definition = add(f"PRODUCT_DEFINITION('design','',{formation},{definition_context})")
    definition_shape = add(f"PRODUCT_DEFINITION_SHAPE('','',{definition})")
    add(f"SHAPE_DEFINITION_REPRESENTATION({definition_shape},{shape})")

    header = [
        "ISO-10303-21;",
        "HEADER;",
        "FILE_DESCRIPTION(('KittyLab test box'),'2;1');",
        f"FILE_NAME('{name}.step','2026-01-01T00:00:00',(''),(''),'kittylab tests','','');",
        "FILE_SCHEMA(('AUTOMOTIVE_DESIGN { 1 0 10303 214 1 1 1 1 }'));",
        "ENDSEC;",
        "DATA;",
    ]
    return "\n".join([*header, *lines, "ENDSEC;", "END-ISO-10303-21;", ""])
