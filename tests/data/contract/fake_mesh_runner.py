"""A stand-in for a local image-to-mesh runner (TripoSR, InstantMesh) that follows the
command contract: read the image given, write a mesh into the output folder."""

import sys
from pathlib import Path

image, out = Path(sys.argv[1]), Path(sys.argv[2])
if not image.read_bytes().startswith(b"\x89PNG"):
    sys.exit("not a PNG")
if b"fail" in image.read_bytes():
    sys.exit("runner failed on this image")
(out / "0").mkdir(parents=True)
vertices = [(x, y, z) for x in (0, 30) for y in (0, 20) for z in (0, 10)]
faces = [
    (1, 3, 4),
    (1, 4, 2),
    (5, 6, 8),
    (5, 8, 7),
    (1, 2, 6),
    (1, 6, 5),
    (3, 7, 8),
    (3, 8, 4),
    (1, 5, 7),
    (1, 7, 3),
    (2, 4, 8),
    (2, 8, 6),
]
lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [f"f {a} {b} {c}" for a, b, c in faces]
(out / "0" / "mesh.obj").write_text("\n".join(lines) + "\n")
