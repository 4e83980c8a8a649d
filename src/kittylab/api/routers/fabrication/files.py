"""``/api/fabrication/files``: uploading a print file (G-code or a model) to print from."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from kittylab.api.auth import container
from kittylab.api.routers.fabrication.callers import PrintCaller, artifact_store
from kittylab.api.schemas import UploadedFileOut
from kittylab.bootstrap import Container
from kittylab.domain import file_names
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.print_queue import needs_slicing
from kittylab.fabrication import uploads

router = APIRouter(prefix="/api/fabrication/files", tags=["fabrication"])

_FILENAME = file_names.name_regex(max_length=120)  # so a sliced "<stem>.gcode" still fits


@router.put(
    "/{filename}",
    response_model=UploadedFileOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    responses={
        413: {
            "description": "Over KITTYLAB_FABRICATION__MAX_UPLOAD_BYTES, or past the "
            "uploader's or the lab's upload quota (the problem's type and detail say which)."
        },
        507: {"description": "The artifact store's disk is down to its reserve of free space."},
    },
)
async def upload_file(
    filename: str,
    request: Request,
    caller: PrintCaller,
    c: Annotated[Container, Depends(container)],
) -> UploadedFileOut:
    """Upload G-code or a model (STL, STEP, 3MF, OBJ) as the raw request body; use the
    returned ``fileKey`` in ``POST /api/fabrication/jobs``. Each person's uploads, and the
    lab's, have a quota (413 naming it); uploads no job uses are removed after the
    retention period."""
    if not _FILENAME.fullmatch(filename) or needs_slicing(filename) is None:
        raise ValidationFailed(
            "filename",
            "must be a plain file name ending in .gcode, .gco, .g, .stl, .step, .stp, .3mf or .obj",
        )
    # The body's size limit is the middleware's (kittylab.api.body_limit); quotas are ours.
    quotas = uploads.Quotas.from_settings(c.settings.fabrication)
    store = artifact_store(c)
    used = await asyncio.to_thread(uploads.usage, store, caller.user_id)
    room = uploads.room(used, quotas)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        uploads.check(used, quotas, int(declared))  # refused before a byte is read
    fd, temp_name = tempfile.mkstemp(prefix="kittylab-upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > room:
                    uploads.check(used, quotas, size)
                out.write(chunk)
        if size == 0:
            raise ValidationFailed("body", "the file is empty")
        key = uploads.new_key(caller.user_id, filename, c.clock())
        stored = await asyncio.to_thread(
            store.put_file, key, Path(temp_name), content_type="application/octet-stream"
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    await asyncio.to_thread(uploads.settle, store, stored.key, caller.user_id, stored.size, quotas)
    return UploadedFileOut(
        file_key=stored.key, name=filename, size=stored.size, sha256=stored.sha256
    )
