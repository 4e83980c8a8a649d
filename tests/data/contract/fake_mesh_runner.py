"""A stand-in for a local image-to-mesh runner (TripoSR, InstantMesh) that follows the
command contract: read the image given, write a mesh into the output folder.

Markers in the image bytes make it misbehave, for the tests of its confinement:
``fail`` exits with an error; ``hang`` starts a child in its process group, writes the
child's pid to ``<out>/child.pid`` and never returns; ``probe:<port>`` writes what it was
allowed to ``<out>/probe.json`` (its limits, its environment's names, whether it could
connect to 127.0.0.1:<port>) and then does its job."""

import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

image, out = Path(sys.argv[1]), Path(sys.argv[2])
data = image.read_bytes()
if not data.startswith(b"\x89PNG"):
    sys.exit("not a PNG")
if b"fail" in data:
    sys.exit("runner failed on this image")
if b"hang" in data:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    (out / "child.pid").write_text(str(child.pid))
    time.sleep(3600)
probe = re.search(rb"probe:(\d+)", data)
if probe:
    try:
        socket.create_connection(("127.0.0.1", int(probe.group(1))), timeout=2).close()
        network = "connected"
    except OSError:
        network = "unreachable"
    report = {
        "memory": resource.getrlimit(resource.RLIMIT_AS)[0],
        "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
        "environment": sorted(os.environ),
        "network": network,
    }
    (out / "probe.json").write_text(json.dumps(report))
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
