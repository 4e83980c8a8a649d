"""CPU time of the other processes a benchmark drives (a broker, a PostgreSQL server),
read from ``/proc`` (Linux), so a result can say where the machine's time went."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_LISTEN = "0A"


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system time of ``pids`` (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on loopback, or ``None`` if not visible."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def postgres_pids(data_directory: str) -> list[int]:
    """The postmaster of ``data_directory`` and its children (backends, WAL writer…)."""
    try:
        postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:  # ppid
            pids.append(int(proc.name))
    return pids


class CpuMeter:
    """CPU seconds spent by a changing set of processes between ``start`` and ``stop``
    (a process that appears in between counts from zero)."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids
        self._start: dict[int, float] = {}

    def start(self) -> None:
        self._start = {pid: cpu_seconds([pid]) for pid in self._pids()}

    def stop(self) -> float:
        return sum(cpu_seconds([pid]) - self._start.get(pid, 0.0) for pid in self._pids())
