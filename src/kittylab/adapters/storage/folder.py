"""The default artifact store: a folder (``<data_dir>/artifacts``).

Writes go to a temporary file in the same folder and are renamed into place, so a reader
never sees half an artifact and a crash mid-write leaves no partial file under the key.
Operating-system errors (disk full, permissions, a key that names a folder of other
artifacts) become ``ArtifactStoreError``; a key with no file under it is ``ArtifactMissing``.
Deleting an artifact also removes the folders it leaves empty, so a store whose files come
and go (uploads) does not collect empty folders for listings to walk.

``min_free_bytes`` is a reserve: a write that would leave less free space than that on the
store's file system is refused (``ArtifactStoreFull``) before a byte is written. By default
the store shares its disk with the embedded PostgreSQL (both under the data dir), and a
database whose disk fills up stops; the reserve keeps artifacts from taking its last room.
It is checked before each write, so writes running at the same time may dip into it by
their own size at most.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from kittylab.records.ports import (
    ArtifactInfo,
    ArtifactMissing,
    ArtifactStoreError,
    ArtifactStoreFull,
    StoredArtifact,
    is_valid_key,
    validate_key,
    validate_prefix,
)

_CHUNK = 1 << 16


class FolderArtifactStore:
    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = root
        self.min_free_bytes = min_free_bytes

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put_file(self, key: str, path: Path, *, content_type: str) -> StoredArtifact:
        self._path(key)  # a bad key is refused before the source is opened
        try:
            source = path.open("rb")
        except OSError as exc:
            raise ArtifactStoreError(f"cannot read {path}: {exc.strerror}") from exc
        with source:
            size = os.fstat(source.fileno()).st_size
            return self._write(key, iter(lambda: source.read(_CHUNK), b""), content_type, size)

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredArtifact:
        return self._write(key, iter([data]), content_type, len(data))

    def _write(
        self, key: str, chunks: Iterator[bytes], content_type: str, size_hint: int
    ) -> StoredArtifact:
        target = self._path(key)
        self._make_room(key, size_hint)
        try:
            fd, temp_name = self._incoming(target.parent)
        except OSError as exc:
            raise ArtifactStoreError(f"cannot store {key}: {exc.strerror}") from exc
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp_name, target)
        except OSError as exc:
            Path(temp_name).unlink(missing_ok=True)
            raise ArtifactStoreError(f"cannot store {key}: {exc.strerror}") from exc
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return StoredArtifact(key, size, digest.hexdigest(), content_type)

    def _make_room(self, key: str, size: int) -> None:
        if self.min_free_bytes <= 0:
            return
        where = self.root
        while not where.exists() and where != where.parent:
            where = where.parent  # the store's folder is made on the first write
        try:
            free = shutil.disk_usage(where).free
        except OSError as exc:
            raise ArtifactStoreError(f"cannot store {key}: {exc.strerror}") from exc
        if free - size < self.min_free_bytes:
            raise ArtifactStoreFull(
                f"cannot store {key} ({size} bytes): {free} bytes are free on the artifact "
                f"store's disk, and {self.min_free_bytes} must stay free "
                "(storage.min_free_bytes)"
            )

    @staticmethod
    def _incoming(folder: Path) -> tuple[int, str]:
        """A temporary file in ``folder``, made with its parents. Twice at most: a delete
        may remove the folder, emptied, between the two steps."""
        for attempt in (1, 2):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return tempfile.mkstemp(dir=folder, prefix=".incoming-")
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def read_chunks(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        try:
            source = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactMissing(f"no artifact stored under {key}") from None
        except OSError as exc:
            raise ArtifactStoreError(f"cannot read {key}: {exc.strerror}") from exc
        # Opened before returning, so a missing key fails here and not mid-stream.
        return _stream(source, chunk_size)

    def download_to(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactMissing(f"no artifact stored under {key}")
        try:
            shutil.copyfile(source, path)
        except FileNotFoundError:
            raise ArtifactMissing(f"no artifact stored under {key}") from None
        except OSError as exc:
            raise ArtifactStoreError(f"cannot copy {key} to {path}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        validate_key(key)
        return None

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            return  # a folder of other artifacts, not an artifact: nothing stored under key
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(f"cannot delete {key}: {exc.strerror}") from exc
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and its parents below the root while they are empty."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone, or not ours to remove): stop here
            folder = folder.parent

    def list_artifacts(self, prefix: str) -> Iterator[ArtifactInfo]:
        validate_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        # Only the folder the prefix names is walked, not the whole store.
        return self._walk(self.root / folder if folder else self.root, prefix)

    def _walk(self, top: Path, prefix: str) -> Iterator[ArtifactInfo]:
        def failed(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):  # a folder removed while walking
                raise ArtifactStoreError(f"cannot list {prefix or 'the store'}: {exc.strerror}")

        for directory, folders, files in os.walk(top, onerror=failed):
            folders[:] = [f for f in folders if not f.startswith(".")]
            base = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                key = name if base == "." else f"{base}/{name}"
                if not key.startswith(prefix) or not is_valid_key(key):
                    continue  # writes in progress (.incoming-*) and strangers
                try:
                    stat = os.stat(os.path.join(directory, name))
                except FileNotFoundError:
                    continue  # deleted since the folder was read
                except OSError as exc:
                    raise ArtifactStoreError(f"cannot list {key}: {exc.strerror}") from exc
                yield ArtifactInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))


def _stream(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with source:
        while chunk := source.read(chunk_size):
            yield chunk
