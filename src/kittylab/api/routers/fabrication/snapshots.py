"""``/api/fabrication/jobs/{id}/snapshots``: a job's monitoring evidence — camera
snapshots, and the telemetry windows the print watcher judged. (With the job's monitor
events, not in ``jobs.py``: they are what a monitor event names as its evidence.)"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from kittylab.adapters.db.tables import FabricationJob
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.routers.fabrication.callers import MonitorCaller, artifact_store
from kittylab.api.schemas import SnapshotOut
from kittylab.bootstrap import Container
from kittylab.domain.errors import NotFound, ValidationFailed
from kittylab.records.ports import ArtifactMissing

router = APIRouter(prefix="/api/fabrication/jobs/{job_id}/snapshots", tags=["fabrication"])

_BINARY = {"type": "string", "format": "binary"}
SNAPSHOT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}
_SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.(jpe?g|png)", re.IGNORECASE)
SERVED_TYPES = {**SNAPSHOT_TYPES, "json": "application/json"}
# What the API and the print watcher store: images, and the watcher's telemetry windows.
_STORED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(jpe?g|png|json)", re.IGNORECASE)


@router.put(
    "/{name}",
    response_model=SnapshotOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"image/jpeg": {"schema": _BINARY}, "image/png": {"schema": _BINARY}},
        }
    },
)
async def upload_snapshot(
    job_id: UUID,
    name: str,
    request: Request,
    _: MonitorCaller,
    c: Annotated[Container, Depends(container)],
) -> SnapshotOut:
    """Keep a camera snapshot of a job as evidence; name it in a monitor event."""
    match = _SNAPSHOT_NAME.fullmatch(name)
    if match is None:
        raise ValidationFailed("name", "must be a plain file name ending in .jpg, .jpeg or .png")
    body = await request.body()
    if not body:
        raise ValidationFailed("body", "the snapshot is empty")
    if not (body.startswith(b"\xff\xd8") or body.startswith(b"\x89PNG")):
        raise ValidationFailed("body", "is not a JPEG or PNG image")
    exists = await asyncio.to_thread(_job_exists, c, job_id)
    if not exists:
        raise NotFound("fabrication job", job_id)
    key = f"snapshots/{job_id}/{c.clock():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}-{name}"
    stored = await asyncio.to_thread(
        artifact_store(c).put_bytes, key, body, content_type=SNAPSHOT_TYPES[match.group(1).lower()]
    )
    return SnapshotOut(snapshot_key=stored.key, size=stored.size)


@router.get(
    "/{name}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {t: {} for t in sorted(set(SERVED_TYPES.values()))}},
        307: {"description": "To a presigned URL, when the store gives one (S3)."},
        404: {"description": "No such job, or no such snapshot of it."},
    },
)
def download_snapshot(
    job_id: UUID,
    name: str,
    _: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    """A job's monitoring evidence — a camera snapshot, or the telemetry window a rule
    judged — as linked from its notifications: streamed from the store, or a redirect to a
    presigned URL when the store can give one."""
    match = _STORED_NAME.fullmatch(name)
    job = uow.get(FabricationJob, job_id)
    if job is None:
        raise NotFound("fabrication job", job_id)
    key = f"snapshots/{job_id}/{name}"
    store = artifact_store(c)
    if match is None or not store.exists(key):
        raise NotFound("snapshot of this job", name)
    url = store.presigned_url(key, c.settings.storage.presign_expiry_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    try:
        chunks: Iterator[bytes] = store.read_chunks(key)
    except ArtifactMissing:
        raise NotFound("snapshot of this job", name) from None
    return StreamingResponse(
        chunks,
        media_type=SERVED_TYPES[match.group(1).lower()],
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


def _job_exists(c: Container, job_id: UUID) -> bool:
    with c.database.unit_of_work() as session:
        return session.get(FabricationJob, job_id) is not None
