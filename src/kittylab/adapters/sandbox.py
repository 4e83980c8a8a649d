"""Confinement of processes that handle untrusted input: the warm CAD workers, the commands
run per CAD job (``freecadcmd``, TripoSR, InstantMesh) and PrusaSlicer.

One recipe, used by all of them:

- **A clean environment** (:func:`clean_environment`): an allow-list — ``PATH``, ``HOME``,
  ``TMPDIR``, ``LANG``, ``LC_ALL`` and what the caller adds — never the server's own
  (database URL, API tokens, cloud credentials live there).
- **No network** (:func:`isolate_network`): a new network namespace, which holds only a
  loopback interface that is down, so nothing is reachable — not even the server's own
  services on 127.0.0.1. Tried directly first (root, or ``CAP_SYS_ADMIN``); refused that,
  inside a new unprivileged user namespace (``CLONE_NEWUSER | CLONE_NEWNET``, the caller's
  uid and gid mapped to themselves, capabilities in it dropped). Only where the kernel
  allows neither are Python's socket constructors (``socket`` and ``_socket``) made to
  fail; that holds inside the calling Python process only, so an external command is never
  started then (:class:`ConfinementUnavailable`). Which one applied is reported as
  ``"namespace"``, ``"user-namespace"`` or ``"sockets-refused"`` (the ``network_isolation``
  of the CAD metadata).
- **Resource limits** (:class:`Limits`): address space (``RLIMIT_AS``), CPU time
  (``RLIMIT_CPU``, SIGXCPU past it) and the size of any file written (``RLIMIT_FSIZE``,
  SIGXFSZ past it); no core files; no new privileges (a setuid program does not elevate).
- **A session of its own**: when the command outlives its wall-clock timeout, and whenever
  it ends, its whole process group is killed, so nothing it started is left behind.

External commands are started through this very file run as a script by the same
interpreter (``python -I sandbox.py --memory N --cpu N --file-size N -- COMMAND …``): it
confines itself, then replaces itself with COMMAND, so namespace and limits apply to
everything COMMAND starts. A separate process rather than a ``preexec_fn``, which is unsafe
in a threaded server; run as a script with ``-I``, it imports nothing but the standard
library and reads no ``PYTHON*`` variable. Its own failures exit 125 (cannot confine) or 127
(cannot execute COMMAND) with a ``kittylab-sandbox:`` line on stderr, which :func:`run`
turns into :class:`SandboxError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

NAMESPACE = "namespace"
USER_NAMESPACE = "user-namespace"
SOCKETS_REFUSED = "sockets-refused"

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

CANNOT_CONFINE = 125
CANNOT_EXECUTE = 127
_MARKER = "kittylab-sandbox: "


class SandboxError(OSError):
    """The sandbox could not start the command (its message says why)."""


class ConfinementUnavailable(SandboxError):
    """Neither a network namespace nor a user namespace could be made: an external
    command would have the network, so it was not started."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of a confined process; 0 leaves one uncapped."""

    memory_bytes: int = 0
    """Address space (``RLIMIT_AS``): allocations past it fail."""
    cpu_seconds: int = 0
    """CPU time over all threads (``RLIMIT_CPU``): SIGXCPU ends the process past it."""
    file_size_bytes: int = 0
    """Largest file it may write (``RLIMIT_FSIZE``): SIGXFSZ ends the process past it."""


@dataclass(frozen=True)
class RunAs:
    """Another user to run as: needs root; no supplementary groups are kept."""

    uid: int
    gid: int


def clean_environment(
    home: Path | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a confined process: ``PATH`` (the server's, or
    ``/usr/bin:/bin``), ``LANG`` and ``LC_ALL`` (``C.UTF-8``), ``HOME`` and ``TMPDIR`` set
    to ``home`` (unset: the server's own ``HOME`` and ``TMPDIR`` when it has them), and
    ``extra``. Nothing else of the server's environment."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    if home is not None:
        env["HOME"] = env["TMPDIR"] = str(home)
    else:
        for name in ("HOME", "TMPDIR"):  # where libraries keep caches and scratch files
            if name in os.environ:
                env[name] = os.environ[name]
    env.update(extra or {})
    return env


# -- in the confined process -----------------------------------------------------------


def isolate_network(*, allow_socket_refusal: bool = True) -> str:
    """Take the calling process off the network (see the module docstring) and say how:
    ``"namespace"``, ``"user-namespace"`` or ``"sockets-refused"``. Call it while the
    process has a single thread (the kernel refuses a user namespace otherwise). Raises
    :class:`ConfinementUnavailable` instead of refusing sockets when
    ``allow_socket_refusal`` is false (before an ``exec``, which would undo the refusal)."""
    libc = _libc()
    if libc is not None:
        if libc.unshare(CLONE_NEWNET) == 0:
            return NAMESPACE
        # Read before unsharing: inside, until the maps are written, we are nobody.
        uid, gid = os.geteuid(), os.getegid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            _map_to_self(uid, gid)
            _drop_capabilities(libc)
            return USER_NAMESPACE
    if not allow_socket_refusal:
        raise ConfinementUnavailable(
            "cannot isolate the network: this kernel allows neither a network namespace "
            "nor an unprivileged user namespace (user.max_user_namespaces, or a seccomp "
            "profile that forbids unshare)"
        )
    _refuse_sockets()
    return SOCKETS_REFUSED


def apply_limits(limits: Limits) -> None:
    """Set ``limits`` on the calling process (inherited by what it starts), and forbid
    core files."""
    for kind, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
    ):
        if value > 0:
            _, hard = resource.getrlimit(kind)
            # A lower limit set on the server already stands: only root could raise it.
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, AttributeError):
        return None


def _map_to_self(uid: int, gid: int) -> None:
    # An unprivileged process may map exactly its own ids, and its gid only once it has
    # given up setgroups(2) in the namespace.
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1\n")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1\n")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """Give up the full capability set a new user namespace grants its creator: a process
    that goes on running (the CAD worker) keeps none; an ``exec`` as a non-root uid would
    drop them anyway."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot drop capabilities: {os.strerror(errno)}")


def _refuse_sockets() -> None:
    import _socket
    import socket

    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise OSError("networking is disabled in this confined process")

    for module, names in (
        (socket, ("socket", "SocketType", "socketpair", "fromfd")),
        (socket, ("create_connection", "create_server")),
        # The C module too: ``_socket.socket`` would otherwise still connect.
        (_socket, ("socket", "SocketType", "socketpair")),
    ):
        for name in names:
            setattr(module, name, refuse)


def _prctl(option: int, value: int) -> None:
    libc = _libc()
    if libc is None or libc.prctl(option, value, 0, 0, 0) != 0:
        raise SandboxError(f"prctl({option}, {value}) failed")


# -- in the server ---------------------------------------------------------------------


def launcher(argv: Sequence[str], limits: Limits, run_as: RunAs | None = None) -> list[str]:
    """The command line that runs ``argv`` confined (see the module docstring), as
    ``run_as`` when given: the launcher takes that identity first, then confines itself."""
    identity = [] if run_as is None else [f"--uid={run_as.uid}", f"--gid={run_as.gid}"]
    return [
        sys.executable,
        "-I",
        str(Path(__file__).resolve()),
        f"--memory={limits.memory_bytes}",
        f"--cpu={limits.cpu_seconds}",
        f"--file-size={limits.file_size_bytes}",
        *identity,
        "--",
        *argv,
    ]


def popen(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    run_as: RunAs | None = None,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    stderr: int | IO[bytes] | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as is (no confinement of its own: for a process that confines
    itself, such as the CAD worker) in a session of its own, with exactly ``env``, as
    ``run_as`` when given. Raises ``OSError`` when it cannot be started."""
    # No shell: argv is the caller's fixed command line.
    return subprocess.Popen(  # noqa: S603
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        user=None if run_as is None else run_as.uid,
        group=None if run_as is None else run_as.gid,
        extra_groups=None if run_as is None else [],
    )


def run(
    argv: Sequence[str],
    *,
    limits: Limits,
    timeout_seconds: float,
    env: Mapping[str, str],
    cwd: Path,
    run_as: RunAs | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` confined and return its outcome, stdout and stderr captured. Raises
    ``subprocess.TimeoutExpired`` after killing its process group when it runs past
    ``timeout_seconds``; :class:`ConfinementUnavailable` when it could not be confined (it
    did not start); :class:`SandboxError` when it could not be executed."""
    command = launcher(argv, limits, run_as)
    process = popen(command, env=env, cwd=cwd)
    try:
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        kill_group(process.pid)
        process.communicate()
        raise
    finally:
        # Whatever it started and left running goes with it.
        kill_group(process.pid)
    if process.returncode in (CANNOT_CONFINE, CANNOT_EXECUTE) and stderr.startswith(
        _MARKER.encode()
    ):
        message = stderr.decode(errors="replace").splitlines()[0].removeprefix(_MARKER)
        if process.returncode == CANNOT_CONFINE:
            raise ConfinementUnavailable(message)
        raise SandboxError(message)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group ``pgid``; nothing when it is gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _exit(code: int, message: str) -> NoReturn:
    sys.stderr.write(f"{_MARKER}{message}\n")
    sys.stderr.flush()
    os._exit(code)


def main(arguments: Sequence[str]) -> NoReturn:
    """The launcher: ``--memory=N --cpu=N --file-size=N [--uid=N --gid=N] -- COMMAND
    [ARGS…]``."""
    try:
        split = list(arguments).index("--")
        options = dict(item.removeprefix("--").split("=", 1) for item in arguments[:split])
        limits = Limits(
            memory_bytes=int(options["memory"]),
            cpu_seconds=int(options["cpu"]),
            file_size_bytes=int(options["file-size"]),
        )
        run_as = RunAs(int(options["uid"]), int(options["gid"])) if "uid" in options else None
        command = list(arguments[split + 1 :])
    except (ValueError, KeyError):
        command = []
    if not command:
        _exit(
            CANNOT_CONFINE,
            "usage: --memory=N --cpu=N --file-size=N [--uid=N --gid=N] -- COMMAND [ARGS...]",
        )
    try:
        if run_as is not None:
            # Before the namespaces, so that they are made by the unprivileged user.
            os.setgroups([])
            os.setresgid(run_as.gid, run_as.gid, run_as.gid)
            os.setresuid(run_as.uid, run_as.uid, run_as.uid)
            # A change of uid makes the process undumpable, and its /proc/self files root's:
            # it could not write its own uid_map. It holds nothing of root's worth hiding.
            _prctl(_PR_SET_DUMPABLE, 1)
        isolate_network(allow_socket_refusal=False)
        apply_limits(limits)
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        _exit(CANNOT_CONFINE, str(exc))
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec:
    # give the command the defaults, so that passing the file-size limit stops it.
    for number in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(number, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)  # noqa: S606 - the caller's fixed command line
    except OSError as exc:
        _exit(CANNOT_EXECUTE, f"cannot execute {command[0]}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
