"""The model-building worker process: ``python -m kittylab.adapters.cad.worker_main``.

It confines itself before importing CadQuery, then serves requests, one JSON object per
line on stdin, answering one JSON line each on the protocol stream (the original stdout;
anything a library prints goes to stderr instead):

    {"spec": {...PartSpec.to_json()...}, "out_dir": "/tmp/x", "cpu_seconds": 20,
     "stl_tolerance": 0.01}
    → {"ok": true, "step": ".../part.step", "stl": ".../part.stl",
       "bbox": [x, y, z], "valid": true, "volume": 1234.5, "solids": 1, "build_ms": 41.0}
    → {"ok": false, "error": "spec.thickness: must be more than 0 mm", "kind": "validation"}
    {"check_step": "/tmp/x/part.step", "cpu_seconds": 20}
    → {"ok": true, "valid": true, "solids": 1, "bbox": [x, y, z]}

The first line it writes is ``{"ready": true, "network": "namespace"|"user-namespace"|
"sockets-refused", "memory_bytes": N}``. Confinement (``kittylab.adapters.sandbox``, the
same recipe as for the commands run per job and for PrusaSlicer): networking is removed
by moving into a new network namespace — inside a new unprivileged user namespace when
the worker is not root — or, only where the kernel allows neither, by making every socket
creation in this process fail; ``RLIMIT_AS`` caps its memory; before each request
``RLIMIT_CPU`` is set to the CPU time used so far plus the request's allowance, so a
runaway build is killed by SIGXCPU. Only a specification crosses in — never
code — and it is rebuilt and checked by ``PartSpec.from_json``; a STEP file from elsewhere
(an online provider) is only read, to check its solids, here where a hostile or broken file
can cost at most this process.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from kittylab.adapters.sandbox import Limits, apply_limits, isolate_network


def _limit_cpu(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = int(used + max(1.0, seconds)) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def main() -> None:
    memory = int(os.environ.get("KITTYLAB_CAD_WORKER_MEMORY", "0"))
    # First, while this process has one thread: the kernel refuses a user namespace later.
    network = isolate_network()
    apply_limits(Limits(memory_bytes=memory))
    # Keep the protocol stream to ourselves: libraries that print go to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import cadquery  # noqa: F401 - imported once, while the worker warms up

    from kittylab.adapters.cad import families
    from kittylab.domain.cad_spec import PartSpec
    from kittylab.domain.errors import ValidationFailed

    def answer(payload: dict[str, Any]) -> None:
        protocol.write(json.dumps(payload) + "\n")
        protocol.flush()

    answer({"ready": True, "network": network, "memory_bytes": memory})
    for line in sys.stdin:
        if not line.strip():
            continue
        started = time.perf_counter()
        try:
            request = json.loads(line)
            _limit_cpu(float(request.get("cpu_seconds", 30)))
            if "check_step" in request:
                answer(_check_step(Path(request["check_step"])))
                continue
            spec = PartSpec.from_json(request["spec"])
            out_dir = Path(request["out_dir"])
            answer(
                _build(families, spec, out_dir, float(request.get("stl_tolerance", 0.01)), started)
            )
        except ValidationFailed as exc:
            answer({"ok": False, "kind": "validation", "error": str(exc)})
        except MemoryError:
            answer({"ok": False, "kind": "memory", "error": "the build ran out of memory"})
        except Exception as exc:
            answer({"ok": False, "kind": "build", "error": f"{type(exc).__name__}: {exc}"[:500]})


def _check_step(path: Path) -> dict[str, Any]:
    """OpenCascade's validity check of every solid in a STEP file; a file it cannot read
    or that holds no solid is not a valid solid."""
    import cadquery as cq

    try:
        shapes = cq.importers.importStep(str(path)).vals()
    except Exception as exc:  # OCP raises its own types for unreadable files
        return {"ok": True, "valid": False, "solids": 0, "reason": type(exc).__name__}
    solids = [solid for shape in shapes for solid in shape.Solids()]  # type: ignore[union-attr]
    if not solids:
        return {"ok": True, "valid": False, "solids": 0, "reason": "no solid in the file"}
    box = cq.Compound.makeCompound(solids).BoundingBox()
    return {
        "ok": True,
        "valid": all(solid.isValid() for solid in solids),
        "solids": len(solids),
        "bbox": [round(box.xlen, 6), round(box.ylen, 6), round(box.zlen, 6)],
    }


def _build(
    families: Any, spec: Any, out_dir: Path, tolerance: float, started: float
) -> dict[str, Any]:
    import cadquery as cq

    model = families.build(spec)
    shape = model.val()
    # Measured before export: once meshed, OpenCascade's box includes the triangulation's
    # tolerance.
    box = shape.BoundingBox()
    valid = bool(shape.isValid())
    out_dir.mkdir(parents=True, exist_ok=True)
    step = out_dir / "part.step"
    stl = out_dir / "part.stl"
    cq.exporters.export(model, str(step), exportType="STEP")
    cq.exporters.export(
        model, str(stl), exportType="STL", tolerance=tolerance, angularTolerance=0.1
    )
    return {
        "ok": True,
        "step": str(step),
        "stl": str(stl),
        "bbox": [round(box.xlen, 6), round(box.ylen, 6), round(box.zlen, 6)],
        "valid": valid,
        "volume": round(float(shape.Volume()), 6),
        "solids": len(shape.Solids()),
        "build_ms": round((time.perf_counter() - started) * 1000, 1),
    }


if __name__ == "__main__":
    main()
