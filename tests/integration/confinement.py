"""What the confinement tests share (tests/integration/test_sandbox.py, test_cad_worker.py,
test_slicer_untrusted.py): a check that a listener no confined process may reach saw no
connection, and a kernel that gives a process no namespace.

"A kernel without namespaces" is a user namespace whose own ``user.max_user_namespaces``
is 0, entered without capabilities, where the kernel refuses both a network namespace and
a nested user namespace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from kittylab.adapters import sandbox

SOURCE_ROOT = Path(sandbox.__file__).resolve().parents[2]
NO_NAMESPACES = [
    "unshare",
    "--user",
    "--map-root-user",
    "sh",
    "-c",
    'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --inh-caps=-all --bounding-set=-all "$@"',
    "sh",
]


def no_connection_arrived(server: socket.socket) -> bool:
    """True when nobody connected to the (non-blocking) listening ``server``."""
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def python_without_namespaces(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this Python (KittyLab's sources importable) on a kernel that gives
    it no namespace; fails the test when it exits non-zero."""
    return subprocess.run(
        [*NO_NAMESPACES, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT)},
        check=True,
    )
