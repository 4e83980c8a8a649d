"""The confinement shared by the CAD workers, the commands run per CAD job and PrusaSlicer
(``kittylab.adapters.sandbox``), against the real kernel: namespaces, limits, environment.

The tests run as root here. "Without root" is a real unprivileged user (uid 65534, run by
the system Python, which that user may execute); "a kernel without namespaces" is
described in tests/integration/confinement.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kittylab.adapters import sandbox
from tests.integration.confinement import no_connection_arrived, python_without_namespaces

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = sandbox.RunAs(65534, 65534)

PROBE = """
import json, os, resource, socket, sys
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    network = "connected"
except OSError as exc:
    network = f"unreachable: {exc}"
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({
    "uid": os.getuid(),
    "netns": os.readlink("/proc/self/ns/net"),
    "network": network,
    "memory": resource.getrlimit(resource.RLIMIT_AS)[0],
    "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
    "file_size": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
    "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
    "no_new_privs": status["NoNewPrivs"].strip(),
    "capabilities": status["CapEff"].strip(),
    "environment": sorted(os.environ),
}))
"""


def test_a_confined_command_has_no_network_its_limits_and_only_a_clean_environment(
    listener: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITTYLAB_DATABASE_URL", "postgresql://kittylab:secret@db/kittylab")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret")
    limits = sandbox.Limits(memory_bytes=2 * 1024**3, cpu_seconds=7, file_size_bytes=10**6)

    done = sandbox.run(
        [sys.executable, "-c", PROBE, str(listener.getsockname()[1])],
        limits=limits,
        timeout_seconds=60,
        env=sandbox.clean_environment(tmp_path),
        cwd=tmp_path,
    )

    report = json.loads(done.stdout)
    assert report["network"].startswith("unreachable")
    assert no_connection_arrived(listener)
    assert report["netns"] != os.readlink("/proc/self/ns/net")
    assert (report["memory"], report["cpu"], report["file_size"]) == (2 * 1024**3, 7, 10**6)
    assert report["core"] == 0
    assert report["no_new_privs"] == "1"
    assert report["environment"] == ["HOME", "LANG", "LC_ALL", "PATH", "TMPDIR"]


def test_a_command_started_without_root_gets_a_user_namespace_and_no_network(
    listener: socket.socket, open_dir: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("starting a process as uid 65534 needs root (the suite runs as root in CI)")
    done = sandbox.run(
        [SYSTEM_PYTHON, "-c", PROBE, str(listener.getsockname()[1])],
        limits=sandbox.Limits(cpu_seconds=30),
        timeout_seconds=60,
        env=sandbox.clean_environment(open_dir),
        cwd=open_dir,
        run_as=NOBODY,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["uid"] == 65534  # its own id, mapped to itself in the user namespace
    assert report["network"].startswith("unreachable")
    assert no_connection_arrived(listener)
    assert report["netns"] != os.readlink("/proc/self/ns/net")
    assert int(report["capabilities"], 16) == 0


def test_without_namespaces_an_external_command_is_never_started(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = (
        "import sys\n"
        "from kittylab.adapters import sandbox\n"
        "try:\n"
        f"    sandbox.run(['touch', {str(marker)!r}], limits=sandbox.Limits(),\n"
        "                timeout_seconds=30, env=sandbox.clean_environment(), cwd='/')\n"
        "except sandbox.ConfinementUnavailable as exc:\n"
        "    print('refused:', exc)\n"
    )

    done = python_without_namespaces(code)

    assert done.stdout.startswith("refused: cannot isolate the network"), done.stderr
    assert not marker.exists()


def test_without_namespaces_a_python_process_refuses_sockets_even_through_the_c_module(
    listener: socket.socket,
) -> None:
    code = (
        "import _socket, socket, sys\n"
        "from kittylab.adapters.sandbox import isolate_network\n"
        "print(isolate_network())\n"
        "address = ('127.0.0.1', int(sys.argv[1]))\n"
        "for attempt in (lambda: socket.create_connection(address, timeout=2),\n"
        "                lambda: socket.socket().connect(address),\n"
        "                lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        "                        .connect(address)):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('connected')\n"
        "    except OSError:\n"
        "        print('refused')\n"
    )

    done = python_without_namespaces(code, str(listener.getsockname()[1]))

    assert done.stdout.split() == ["sockets-refused", "refused", "refused", "refused"]
    assert no_connection_arrived(listener)


def test_a_command_writing_past_its_file_size_limit_is_stopped(tmp_path: Path) -> None:
    big = tmp_path / "big"
    done = sandbox.run(
        [sys.executable, "-c", f"open({str(big)!r}, 'wb').write(bytes(2_000_000))"],
        limits=sandbox.Limits(file_size_bytes=1_000_000),
        timeout_seconds=60,
        env=sandbox.clean_environment(tmp_path),
        cwd=tmp_path,
    )

    assert done.returncode != 0
    assert big.stat().st_size <= 1_000_000


def test_a_command_past_its_timeout_is_killed_with_everything_it_started(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        sandbox.run(
            [sys.executable, "-c", code],
            limits=sandbox.Limits(),
            timeout_seconds=2,
            env=sandbox.clean_environment(tmp_path),
            cwd=tmp_path,
        )

    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "gone"


def test_a_missing_command_is_a_sandbox_error(tmp_path: Path) -> None:
    with pytest.raises(sandbox.SandboxError, match="cannot execute /nonexistent"):
        sandbox.run(
            ["/nonexistent"],
            limits=sandbox.Limits(),
            timeout_seconds=30,
            env=sandbox.clean_environment(tmp_path),
            cwd=tmp_path,
        )
