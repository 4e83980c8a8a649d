"""A camera's picture taken now and kept as an artifact (issue 16: "show me the laser
camera"), the way a held command's evidence is kept (``safety.evidence``).

``CameraPictures.take`` fetches the camera's snapshot URL (its ``snapshot_url``, or the
simulator's for a simulated camera: ``monitoring.cameras``) with the snapshot source (a
bounded HTTP fetch, image types only), stores it under ``cameras/<device id>/<time>-<rand>
.<png|jpg>`` in the artifact store and returns where the API serves it:
``GET /api/devices/<device id>/pictures/<file>`` (``api/routers/devices.py``, for those
who may read the camera). A camera with no snapshot URL, or one that does not answer,
gives a ``Picture`` with ``unavailable`` set and nothing stored.

Synchronous: it runs in a request's thread (the conversation's answer), the fetch in an
event loop of its own.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from kittylab.adapters.db.engine import Database
from kittylab.domain.errors import KittyLabError
from kittylab.monitoring import cameras
from kittylab.monitoring.ports import SnapshotSource
from kittylab.records.ports import ArtifactStore

PREFIX = "cameras"
FILE = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{6}\.(png|jpg)")
"""The file names ``take`` gives (and the API serves): nothing else is read."""


@dataclass(frozen=True)
class Picture:
    taken_at: datetime
    key: str | None = None
    """The artifact's key in the store."""
    url: str | None = None
    """Where the API serves it (a path on this server)."""
    unavailable: str | None = None
    """Why there is no picture."""


def artifact_key(device_id: UUID, file: str) -> str:
    return f"{PREFIX}/{device_id}/{file}"


def picture_url(device_id: UUID, file: str) -> str:
    return f"/api/devices/{device_id}/pictures/{file}"


class CameraPictures:
    def __init__(
        self,
        database: Database,
        store: ArtifactStore,
        snapshots: SnapshotSource,
        clock: Callable[[], datetime],
        *,
        simulated_cameras: str | None = None,
    ) -> None:
        self._database = database
        self._store = store
        self._snapshots = snapshots
        self._clock = clock
        self._simulated = simulated_cameras

    def take(self, device_id: UUID, external_id: str) -> Picture:
        """The camera's picture now, stored (see the module doc)."""
        with self._database.unit_of_work() as session:
            urls = dict(cameras.snapshot_urls(session, simulated=self._simulated))
        url = urls.get(external_id)
        now = self._clock()
        if url is None:
            return Picture(now, unavailable="it declares no snapshot_url")
        try:
            snapshot = asyncio.run(self._snapshots.fetch(url))
        except KittyLabError as exc:
            return Picture(now, unavailable=str(exc))
        suffix = "png" if "png" in snapshot.content_type else "jpg"
        file = f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}.{suffix}"
        key = artifact_key(device_id, file)
        try:
            self._store.put_bytes(key, snapshot.data, content_type=snapshot.content_type)
        except KittyLabError as exc:
            return Picture(now, unavailable=f"it could not be kept: {exc}")
        return Picture(now, key=key, url=picture_url(device_id, file))
