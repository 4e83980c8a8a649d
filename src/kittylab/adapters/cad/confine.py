"""Confinement of commands run per CAD job (``freecadcmd``, TripoSR, InstantMesh).

``run_confined`` starts ``python -m kittylab.adapters.cad.confine MEMORY_BYTES CPU_SECONDS
COMMAND [ARGS…]`` in a new session (its own process group). That process drops networking
(a new network namespace, see ``worker_main._drop_network``; it refuses to go on without
one, since refusing sockets inside Python does not survive ``exec``), caps its address space
(``RLIMIT_AS``; 0 leaves it uncapped) and CPU time (``RLIMIT_CPU``), then replaces itself
with COMMAND — limits and namespace are inherited by everything COMMAND starts. This is
done by a separate process rather than a ``preexec_fn``, which is unsafe in a threaded
server. When the command outlives its wall-clock timeout, or leaves processes behind when
it ends, the whole process group is killed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kittylab.adapters.cad.worker_main import _drop_network


def run_confined(
    argv: Sequence[str],
    *,
    memory_bytes: int,
    cpu_seconds: int,
    timeout_seconds: float,
    env: Mapping[str, str],
    cwd: Path,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` confined (see the module docstring) and return its outcome, output
    captured. Raises ``subprocess.TimeoutExpired`` after killing its process group when it
    runs past ``timeout_seconds``, and ``OSError`` when it cannot be started."""
    command = [
        sys.executable,
        "-m",
        "kittylab.adapters.cad.confine",
        str(memory_bytes),
        str(cpu_seconds),
        *argv,
    ]
    process = subprocess.Popen(  # noqa: S603 - a fixed interpreter and the caller's argv
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        process.communicate()
        raise
    finally:
        # Whatever it started and left running goes with it.
        _kill_group(process.pid)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def main() -> None:
    memory, cpu, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    if not command:
        sys.exit("usage: confine MEMORY_BYTES CPU_SECONDS COMMAND [ARGS...]")
    network = _drop_network()
    if network != "namespace":
        # Refusing sockets inside this Python does not survive exec: say so and stop.
        sys.exit("cannot isolate the network for an external command (no namespaces)")
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    os.execvp(command[0], command)  # noqa: S606 - the caller's fixed command line


if __name__ == "__main__":
    main()
