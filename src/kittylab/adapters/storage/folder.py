"""The default artifact store: a folder (``<data_dir>/artifacts``).

Writes go to a temporary file in the same folder and are renamed into place, so a reader
never sees half an artifact and a crash mid-write leaves no partial file under the key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kittylab.services.artifacts import ArtifactMissing, StoredArtifact, validate_key

_CHUNK = 1 << 16


class FolderArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put_file(self, key: str, path: Path, *, content_type: str) -> StoredArtifact:
        with path.open("rb") as source:
            return self._write(key, iter(lambda: source.read(_CHUNK), b""), content_type)

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredArtifact:
        return self._write(key, iter([data]), content_type)

    def _write(self, key: str, chunks: Iterator[bytes], content_type: str) -> StoredArtifact:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return StoredArtifact(key, size, digest.hexdigest(), content_type)

    def read_chunks(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        try:
            source = path.open("rb")
        except FileNotFoundError:
            raise ArtifactMissing(f"no artifact stored under {key}") from None
        # Opened before returning, so a missing key fails here and not mid-stream.
        return _stream(source, chunk_size)

    def download_to(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactMissing(f"no artifact stored under {key}")
        shutil.copyfile(source, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _stream(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with source:
        while chunk := source.read(chunk_size):
            yield chunk
