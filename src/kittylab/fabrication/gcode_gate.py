"""The gate every print file passes before it may reach a printer: its G-code is checked
line by line against the printer's policy (``kittylab.domain.gcode_check``).

- ``check_file``: a G-code file (uploaded, or the slicer's output), streamed in blocks.
- ``check_archive``: every ``.gcode`` entry of a 3MF project (a Bambu project keeps its
  plates' G-code as ``Metadata/plate_<n>.gcode``), streamed out of the archive with the
  decompressed size bounded, so a zip bomb costs at most ``MAX_ARCHIVE_GCODE_BYTES`` of
  work before it is refused.

Both raise ``GcodeRefused`` with the first violations; nothing here decides what happens
to the job (``fabrication.jobs`` fails it).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kittylab.domain.errors import DomainError
from kittylab.domain.gcode_check import GcodeCheck, Violation, check_gcode
from kittylab.domain.gcode_policy import GcodePolicy

BLOCK_BYTES = 256 * 1024
MAX_ARCHIVE_GCODE_BYTES = 512 * 1024 * 1024
"""Decompressed G-code read out of one archive at most: past it the project is refused
(a plate's G-code is tens of megabytes)."""
MAX_ARCHIVE_GCODE_FILES = 64
MAX_CENTRAL_DIRECTORY_BYTES = 1024 * 1024
"""An archive's table of contents at most (some 20,000 entries; a 3MF has dozens): the
ZIP reader parses it whole into memory before anything else can be checked."""


class GcodeRefused(DomainError):
    """A print file breaks the printer's G-code policy (or cannot be checked). ``check``
    holds the violations; ``source`` names the file inside an archive, if any."""

    def __init__(self, check: GcodeCheck, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{check.summary()}")
        self.check = check
        self.source = source

    def violations(self) -> list[dict[str, object]]:
        """The violations as JSON objects (with ``file`` for an archive entry)."""
        extra = {"file": self.source} if self.source else {}
        return [{**v.as_dict(), **extra} for v in self.check.violations]


def check_file(path: Path, policy: GcodePolicy) -> GcodeCheck:
    """Check the G-code file at ``path``; ``GcodeRefused`` on any violation."""
    with path.open("rb") as stream:
        check = check_gcode(_blocks(stream), policy)
    if not check.ok:
        raise GcodeRefused(check)
    return check


def check_archive(path: Path, policy: GcodePolicy) -> int:
    """Check every ``.gcode`` entry of the ZIP archive (3MF) at ``path``; returns how
    many were checked (0 for an archive without G-code, or a file that is no archive:
    the slicer judges those). ``GcodeRefused`` on a violation, an unreadable entry, or
    more G-code than ``MAX_ARCHIVE_GCODE_BYTES`` / ``MAX_ARCHIVE_GCODE_FILES``."""
    directory = _central_directory_bytes(path)
    if directory is None:
        return 0
    if directory > MAX_CENTRAL_DIRECTORY_BYTES:
        raise _unreadable(
            None,
            f"the project's table of contents is {directory} bytes (at most "
            f"{MAX_CENTRAL_DIRECTORY_BYTES} are read)",
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return 0
    with archive:
        entries = [i for i in archive.infolist() if i.filename.lower().endswith(".gcode")]
        if len(entries) > MAX_ARCHIVE_GCODE_FILES:
            raise _unreadable(
                None,
                f"the project holds {len(entries)} G-code files (at most "
                f"{MAX_ARCHIVE_GCODE_FILES} are checked)",
            )
        budget = [MAX_ARCHIVE_GCODE_BYTES]
        for entry in entries:
            try:
                with archive.open(entry) as stream:
                    check = check_gcode(_blocks(stream, budget), policy)
            except _TooLarge:
                raise _unreadable(
                    entry.filename,
                    f"more than {MAX_ARCHIVE_GCODE_BYTES // (1024 * 1024)} MiB of G-code "
                    "once decompressed",
                ) from None
            except _ARCHIVE_READ_ERRORS as exc:
                raise _unreadable(entry.filename, f"it cannot be read ({exc})") from None
            if not check.ok:
                raise GcodeRefused(check, entry.filename)
        return len(entries)


# What zipfile raises for a damaged, encrypted or unsupported entry.
_ARCHIVE_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    OSError,
    EOFError,
    RuntimeError,
)


class _TooLarge(Exception):
    pass


_END = b"PK\x05\x06"
_END_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END = b"PK\x06\x06"


def _central_directory_bytes(path: Path) -> int | None:
    """The size of the ZIP archive's central directory, read from its end record the way
    Python's ``zipfile`` finds it (the last 22 bytes, else the last signature in the
    final 64 KiB), Zip64 included; None when ``path`` is not a ZIP archive."""
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        tail_size = min(size, _END_SIZE + 0xFFFF)
        stream.seek(size - tail_size)
        tail = stream.read(tail_size)
        at = len(tail) - _END_SIZE
        if at < 0 or tail[at : at + 4] != _END:
            at = tail.rfind(_END)
        if at < 0 or len(tail) - at < _END_SIZE:
            return None
        directory = int.from_bytes(tail[at + 12 : at + 16], "little")
        locator = at - 20
        if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
            stream.seek(int.from_bytes(tail[locator + 8 : locator + 16], "little"))
            record = stream.read(56)
            if len(record) == 56 and record[:4] == _ZIP64_END:
                directory = max(directory, int.from_bytes(record[40:48], "little"))
        return directory


def _blocks(stream: IO[bytes], budget: list[int] | None = None) -> Iterator[bytes]:
    while block := stream.read(BLOCK_BYTES):
        if budget is not None:
            budget[0] -= len(block)
            if budget[0] < 0:
                raise _TooLarge
        yield block


def _unreadable(source: str | None, reason: str) -> GcodeRefused:
    return GcodeRefused(GcodeCheck((Violation(0, "", reason),), 0), source)
