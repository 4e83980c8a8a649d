"""Ports of the records: the artifact store (below) and the notification sender
(``NotificationSender``, ``DeliveryFailed``).

The artifact store port: where CAD outputs, sliced G-code and snapshots are kept.

Keys are relative, slash-separated paths (``cad/<job>/<name>.step``, ``gcode/<job>.gcode``)
made of letters, digits, ``-``, ``_``, ``.`` and ``/``; ``validate_key`` enforces it so a
key can never escape the store's root or name an S3 object oddly. Implementations: a folder
in the data dir (the default) and any S3-compatible server (``kittylab.adapters.storage``).
Both pass one contract test (tests/integration/test_artifact_stores.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from kittylab.domain.enums import NotificationChannel
from kittylab.domain.errors import InfrastructureError, ValidationFailed


class ArtifactStoreError(InfrastructureError):
    """The store could not be reached or refused the operation."""


class ArtifactMissing(ArtifactStoreError):
    """No artifact is stored under that key."""


class ArtifactStoreFull(ArtifactStoreError):
    """Storing the artifact would use the free space the store must leave on its disk."""


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True)
class ArtifactInfo:
    """One stored artifact as a listing shows it."""

    key: str
    size: int
    modified_at: datetime
    """When it was last stored (UTC, time-zone aware)."""


class ArtifactStore(Protocol):
    def put_file(self, key: str, path: Path, *, content_type: str) -> StoredArtifact:
        """Store the file at ``path`` under ``key`` (replacing any earlier one)."""

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> StoredArtifact:
        """Store ``data`` under ``key`` (replacing any earlier one)."""

    def read_chunks(self, key: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """Stream the artifact; ``ArtifactMissing`` when there is none."""

    def download_to(self, key: str, path: Path) -> None:
        """Write the artifact to ``path``; ``ArtifactMissing`` when there is none."""

    def exists(self, key: str) -> bool: ...

    def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        """A time-limited URL a client can fetch directly, or ``None`` when the store
        cannot give one (the folder store: stream through the API instead)."""

    def delete(self, key: str) -> None:
        """Remove the artifact; removing a missing key is not an error."""

    def list_artifacts(self, prefix: str) -> Iterator[ArtifactInfo]:
        """Every artifact whose key starts with ``prefix`` (a string prefix, as in S3:
        ``uploads/`` lists ``uploads/a/b.stl``; ``""`` lists the whole store), in no
        particular order. A bad prefix is ``ValidationFailed`` on ``artifact_prefix``
        before anything is read; the store failing, even mid-listing, is
        ``ArtifactStoreError``. Files in the store that are not artifacts (a write in
        progress, anything whose name is not a valid key) are left out."""


_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
MAX_KEY_LENGTH = 512


def validate_key(key: str) -> str:
    """``key`` when it is a safe relative path, else ``ValidationFailed`` on ``artifact_key``.

    Segments must start with a letter or digit, which rules out ``..`` and hidden files."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ValidationFailed(
            "artifact_key",
            "must be a relative path of letters, digits, '.', '-', '_' and '/' "
            f"(at most {MAX_KEY_LENGTH} characters, no '..')",
        )
    return key


def is_valid_key(key: str) -> bool:
    return len(key) <= MAX_KEY_LENGTH and _KEY.fullmatch(key) is not None


_PREFIX = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*/)*[A-Za-z0-9._-]*")


def validate_prefix(prefix: str) -> str:
    """``prefix`` when it can start a valid key (``""``, ``uploads/``, ``uploads/2025``),
    else ``ValidationFailed`` on ``artifact_prefix``."""
    if len(prefix) > MAX_KEY_LENGTH or not _PREFIX.fullmatch(prefix) or prefix.startswith("."):
        raise ValidationFailed(
            "artifact_prefix",
            "must be the start of a key: letters, digits, '.', '-', '_' and '/', "
            "no empty or hidden segments",
        )
    return prefix


class DeliveryFailed(Exception):
    """A sender could not deliver a message; ``str(exc)`` is safe to store and log.

    ``permanent`` says no later attempt can succeed as things stand (a channel with no
    target configured, a recipient no target accepts), so the message fails at once
    instead of being retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class NotificationSender(Protocol):
    def send(self, channel: NotificationChannel, recipient: str, title: str, body: str) -> None:
        """Deliver one message or raise ``DeliveryFailed`` (``permanent`` when retrying
        cannot help). Must honour its own timeout."""
