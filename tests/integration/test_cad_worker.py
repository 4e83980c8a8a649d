"""The confined model-building worker: limits, replacement after a timeout or a crash,
no network."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from kittylab.adapters import sandbox
from kittylab.adapters.cad.worker import (
    SOURCE_ROOT,
    CadBuildTimeout,
    CadWorkerCrashed,
    CadWorkerPool,
    WorkerLimits,
    worker_environment,
)
from kittylab.domain.cad_prompt import parse_prompt
from tests.integration.confinement import no_connection_arrived, python_without_namespaces

CUBE = parse_prompt("a 20 mm cube")
GEAR = parse_prompt("spur gear 200 teeth module 2, 10 mm thick")


@pytest.fixture(scope="module")
def pool() -> Iterator[CadWorkerPool]:
    workers = CadWorkerPool(size=1)
    workers.warm_up()
    yield workers
    workers.close()


def test_the_built_gear_has_its_tip_and_root_circles_and_involute_flanks(
    pool: CadWorkerPool, tmp_path: Path
) -> None:
    import math

    import numpy as np
    import trimesh

    from kittylab.domain.cad_spec import (
        gear_base_diameter,
        gear_half_tooth_angle,
        gear_root_diameter,
        gear_tip_diameter,
    )

    spec = parse_prompt("a spur gear 20 teeth module 2, 6 mm bore")
    p = spec.params
    result = pool.build(spec, tmp_path)
    assert result.valid
    mesh = trimesh.load(str(result.stl), force="mesh")
    xy = np.asarray(mesh.vertices)[:, :2]
    radius = np.hypot(xy[:, 0], xy[:, 1])
    outside_bore = radius > p["bore"] / 2 + 0.5
    assert radius.max() == pytest.approx(gear_tip_diameter(p) / 2, abs=0.01)
    assert radius[outside_bore].min() == pytest.approx(gear_root_diameter(p) / 2, abs=0.01)
    # Every surface point on a flank sits where the involute puts it: its angle from the
    # nearest tooth centre is the half tooth angle at its radius.
    r_base, r_tip = gear_base_diameter(p) / 2, gear_tip_diameter(p) / 2
    pitch = 2 * math.pi / p["teeth"]
    on_flank = (radius > r_base + 0.05) & (radius < r_tip - 0.05)
    assert on_flank.sum() > 20 * 2 * 5
    for (x, y), r in zip(xy[on_flank], radius[on_flank], strict=True):
        offset = abs(math.remainder(math.atan2(y, x), pitch))
        assert abs(offset - gear_half_tooth_angle(p, float(r))) * r < 0.02, (x, y)


def test_a_step_file_is_checked_for_valid_solids_in_the_worker(
    pool: CadWorkerPool, tmp_path: Path
) -> None:
    good = pool.check_step(Path(__file__).parents[1] / "data" / "contract" / "cube20.step")
    assert good.valid is True
    assert good.solids == 1
    assert good.bbox == pytest.approx((20, 20, 20))
    junk = tmp_path / "junk.step"
    junk.write_bytes(b"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n")
    bad = pool.check_step(junk)
    assert bad.valid is False
    assert bad.solids == 0


def test_the_worker_gets_a_clean_environment_without_the_services_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITTYLAB_CAD__ZOO_API_TOKEN", "zoo-secret")
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", "postgresql://kittylab:secret@db/kittylab")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret")
    fresh = CadWorkerPool(size=1)
    try:
        assert fresh.build(CUBE, tmp_path).valid  # still finds kittylab and CadQuery
        worker = fresh._idle.queue[-1]
        with open(f"/proc/{worker.process.pid}/environ", "rb") as environ:
            names = {
                item.split(b"=", 1)[0].decode() for item in environ.read().split(b"\0") if item
            }
    finally:
        fresh.close()
    assert (
        not {"KITTYLAB_CAD__ZOO_API_TOKEN", "KITTYLAB_DATABASE_URL", "AWS_SECRET_ACCESS_KEY"}
        & names
    )
    assert names <= {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "PYTHONPATH",
        "KITTYLAB_CAD_WORKER_MEMORY",
    }


def test_the_worker_runs_without_network(pool: CadWorkerPool) -> None:
    assert pool.network_isolation == "namespace"


def test_a_build_past_its_time_limit_is_killed_and_the_next_build_gets_a_fresh_worker(
    pool: CadWorkerPool, tmp_path: Path
) -> None:
    pool.limits = WorkerLimits(timeout_seconds=0.05)
    try:
        with pytest.raises(CadBuildTimeout):
            pool.build(GEAR, tmp_path / "slow")
    finally:
        pool.limits = WorkerLimits()
    restarts = pool.restarts
    result = pool.build(CUBE, tmp_path / "after")
    assert result.valid
    assert pool.restarts >= restarts


def test_a_worker_that_dies_between_builds_is_replaced(pool: CadWorkerPool, tmp_path: Path) -> None:
    pool.build(CUBE, tmp_path / "first")
    worker = pool._idle.queue[-1]
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    result = pool.build(CUBE, tmp_path / "second")
    assert result.bbox == (20.0, 20.0, 20.0)


def test_a_worker_that_dies_mid_build_is_reported_as_crashed(tmp_path: Path) -> None:
    # A CPU allowance of one second cannot build a 200-tooth gear: SIGXCPU ends the worker.
    starved = CadWorkerPool(size=1, limits=WorkerLimits(cpu_seconds=0.01, timeout_seconds=60))
    try:
        starved.warm_up()
        with pytest.raises((CadWorkerCrashed, CadBuildTimeout)):
            _build_repeatedly(starved, tmp_path)
    finally:
        starved.close()


def _build_repeatedly(pool: CadWorkerPool, tmp_path: Path) -> None:
    for index in range(5):
        pool.build(GEAR, tmp_path / str(index))


def test_without_namespaces_the_worker_refuses_sockets_even_through_the_c_module() -> None:
    # The kernel gives this process neither a network nor a user namespace.
    code = (
        "import _socket, socket\n"
        "from kittylab.adapters.sandbox import isolate_network\n"
        "print(isolate_network())\n"
        "for attempt in (lambda: socket.create_connection(('127.0.0.1', 5432), timeout=1),\n"
        "                lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        "                        .connect(('127.0.0.1', 5432))):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('connected')\n"
        "    except OSError as exc:\n"
        "        print('refused:', exc)\n"
    )
    done = python_without_namespaces(code)
    lines = done.stdout.splitlines()
    assert lines[0] == "sockets-refused"
    assert all(line.startswith("refused: networking is disabled") for line in lines[1:])
    assert len(lines) == 3


def test_in_its_namespace_the_worker_cannot_reach_local_services() -> None:
    code = (
        "import socket\n"
        "from kittylab.adapters.sandbox import isolate_network\n"
        "print(isolate_network())\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=1)\n"
        "    print('connected')\n"
        "except OSError:\n"
        "    print('unreachable')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["namespace", "unreachable"]


def test_a_worker_started_without_root_is_in_a_user_namespace_and_cannot_reach_local_services(
    listener: socket.socket, open_dir: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("starting a process as uid 65534 needs root (the suite runs as root in CI)")
    # The system Python: uid 65534 may execute it, not the virtualenv's (under /root).
    python = "/usr/bin/python3"
    home = open_dir  # CadQuery reads ~/.config
    env = worker_environment()
    env |= {
        "HOME": str(home),
        "PYTHONPATH": f"{SOURCE_ROOT}:{sysconfig.get_paths()['purelib']}",
        "KITTYLAB_CAD_WORKER_MEMORY": str(3 * 1024**3),
    }
    worker = sandbox.popen(
        [python, "-m", "kittylab.adapters.cad.worker_main"],
        env=env,
        run_as=sandbox.RunAs(65534, 65534),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None
        hello = json.loads(worker.stdout.readline() or b"{}")
        assert hello.get("ready"), worker.stderr.read() if worker.stderr else ""
        # Its network namespace holds no route to the listener, whoever tries from it.
        probe = subprocess.run(
            [
                "nsenter",
                f"--net=/proc/{worker.pid}/ns/net",
                sys.executable,
                "-c",
                "import socket, sys\n"
                "try:\n"
                "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2)\n"
                "    print('connected')\n"
                "except OSError:\n"
                "    print('unreachable')\n",
                str(listener.getsockname()[1]),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        worker_netns = os.readlink(f"/proc/{worker.pid}/ns/net")
        status = Path(f"/proc/{worker.pid}/status").read_text()
    finally:
        worker.kill()
        worker.communicate()
        listener_idle = no_connection_arrived(listener)
    assert hello["network"] == "user-namespace"
    assert "Uid:\t65534" in status
    assert "CapEff:\t0000000000000000" in status  # none kept from its user namespace
    assert worker_netns != os.readlink("/proc/self/ns/net")
    assert probe.stdout.split() == ["unreachable"]
    assert listener_idle


def test_commands_run_per_job_are_confined_before_they_start() -> None:
    probe = (
        "import resource, socket\n"
        "print(resource.getrlimit(resource.RLIMIT_CPU)[0])\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=1)\n"
        "    print('connected')\n"
        "except OSError:\n"
        "    print('unreachable')\n"
    )
    done = subprocess.run(
        sandbox.launcher(
            [sys.executable, "-c", probe],
            sandbox.Limits(memory_bytes=2 * 1024**3, cpu_seconds=7),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["7", "unreachable"]


def test_an_idle_worker_is_stopped_and_the_next_build_starts_a_fresh_one(
    pool: CadWorkerPool, tmp_path: Path
) -> None:
    pool.build(CUBE, tmp_path / "first")
    worker = pool._idle.queue[-1]
    assert pool.release_idle(3600) == 0  # used a moment ago: kept warm
    assert worker.alive
    assert pool.release_idle(0) == 1  # issue 14: its memory is given back
    assert not worker.alive
    assert list(pool._idle.queue) == []
    result = pool.build(CUBE, tmp_path / "second")
    assert result.bbox == (20.0, 20.0, 20.0)
