"""``python -m kittylab.adapters.cad.confine MEMORY_BYTES CPU_SECONDS COMMAND [ARGS…]``:
drop networking (see ``worker_main._drop_network``), cap memory and CPU time, then replace
this process with COMMAND. Used for tools run per job (``freecadcmd``) instead of a
``preexec_fn``, which is unsafe in a threaded server."""

from __future__ import annotations

import os
import resource
import sys

from kittylab.adapters.cad.worker_main import _drop_network


def main() -> None:
    memory, cpu, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    if not command:
        sys.exit("usage: confine MEMORY_BYTES CPU_SECONDS COMMAND [ARGS...]")
    network = _drop_network()
    if network != "namespace":
        # Refusing sockets inside this Python does not survive exec: say so and stop.
        sys.exit("cannot isolate the network for an external command (no namespaces)")
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    os.execvp(command[0], command)  # noqa: S606 - the caller's fixed command line


if __name__ == "__main__":
    main()
