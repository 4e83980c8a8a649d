"""``/api/devices`` and ``/api/device``: the lab's devices, their latest state, and giving
one a command (``POST /api/device/{id}/command``; the commands are read at
``/api/commands``). A device's locks are the lockout router's (``locks.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import or_, select

from kittylab import bootstrap
from kittylab.adapters.db.tables import Device
from kittylab.api.auth import Caller, UnitOfWork, container
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import (
    CommandAccepted,
    CommandRequest,
    DeviceOut,
    DeviceStateOut,
    PendingHazard,
)
from kittylab.bootstrap import Container
from kittylab.conversation.answers.access import read_refusal
from kittylab.devices import telemetry
from kittylab.devices.requests import request_command
from kittylab.domain.enums import DeviceKind, OnlineState, Role
from kittylab.domain.errors import NotFound, PermissionDenied, ValidationFailed
from kittylab.fabrication import print_requests
from kittylab.monitoring import camera_pictures
from kittylab.records.ports import ArtifactMissing

router = APIRouter(prefix="/api", tags=["lab"])

# Engineers design and print through fabrication jobs; driving equipment directly is for
# the people who run the floor. A print_start is a print job (issue 16), which engineers
# may queue: the route admits them for that intent only.
_FLOOR_ROLES = (Role.OPERATOR, Role.SAFETY, Role.ADMIN)


@router.get("/devices", response_model=Page[DeviceOut])
def list_devices(
    _: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    kind: DeviceKind | None = None,
    zone_id: Annotated[UUID | None, Query(alias="zoneId")] = None,
    integration: Annotated[str | None, Query(max_length=64)] = None,
    online_state: Annotated[OnlineState | None, Query(alias="onlineState")] = None,
    include_retired: Annotated[bool, Query(alias="includeRetired")] = False,
    name: Annotated[str | None, Query(max_length=100, description="external id or alias")] = None,
) -> Page[DeviceOut]:
    stmt = where_equal(
        select(Device),
        (Device.kind, kind),
        (Device.zone_id, zone_id),
        (Device.integration, integration),
        (Device.online_state, online_state),
    )
    if not include_retired:
        stmt = stmt.where(Device.retired_at.is_(None))
    if name:
        stmt = stmt.where(or_(Device.external_id == name, Device.aliases.contains([name])))
    return paginate(uow, stmt, Device.id, cursor, limit, DeviceOut.model_validate)


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(device_id: UUID, _: Caller, uow: UnitOfWork) -> Device:
    return get_or_404(uow, Device, device_id, "device")


@router.get("/devices/{device_id}/state", response_model=DeviceStateOut)
def get_device_state(device_id: UUID, _: Caller, uow: UnitOfWork) -> DeviceStateOut:
    """The device's latest reported state (its newest ``state`` telemetry), with when it
    was reported; ``state`` is null until the device has reported once."""
    device = get_or_404(uow, Device, device_id, "device")
    latest = telemetry.latest_state(uow, device_id)
    return DeviceStateOut(
        device_id=device.id,
        online_state=device.online_state,
        state=latest.payload if latest else None,
        reported_at=latest.recorded_at if latest else None,
    )


@router.get(
    "/devices/{device_id}/pictures/{name}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}}},
        307: {"description": "To a presigned URL, when the store gives one (S3)."},
        403: {"description": "The camera's readings are not for the caller's roles."},
        404: {"description": "No such device, or no such picture of it."},
    },
)
def get_device_picture(
    device_id: UUID,
    name: str,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> Response:
    """A picture a camera took for a conversation ("show me the laser camera", issue 16),
    kept in the artifact store (``monitoring.camera_pictures``): streamed, or a redirect
    to a presigned URL when the store gives one. Only for those who may read the camera."""
    device = get_or_404(uow, Device, device_id, "device")
    why = read_refusal(caller, device.kind, device.attributes)
    if why is not None:
        raise PermissionDenied(f"{device.display_name}: {why}")
    match = camera_pictures.FILE.fullmatch(name)
    key = camera_pictures.artifact_key(device_id, name)
    if match is None or not c.artifacts.exists(key):
        raise NotFound("picture of this device", name)
    url = c.artifacts.presigned_url(key, c.settings.storage.presign_expiry_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    try:
        chunks: Iterator[bytes] = c.artifacts.read_chunks(key)
    except ArtifactMissing:
        raise NotFound("picture of this device", name) from None
    media = "image/png" if match.group(1) == "png" else "image/jpeg"
    return StreamingResponse(
        chunks, media_type=media, headers={"Content-Disposition": f'inline; filename="{name}"'}
    )


@router.post(
    "/device/{device_id}/command",
    response_model=CommandAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        403: {"description": "The policy denies it (the device is locked out)."},
        404: {"description": "No such device."},
        409: {"description": "The device is offline or its state forbids the intent."},
    },
)
def send_command(
    device_id: UUID,
    body: CommandRequest,
    caller: Caller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> CommandAccepted:
    """Accept a command for the device and send it in the background. A hazardous intent
    answers ``awaiting_confirmation`` with ``pendingHazard`` (the same object
    ``/api/query`` answers with: the safety event, what it still needs) and announces it on
    MQTT ``kitty/safety/<eventId>``: nothing is sent until the approvals are in (``GET
    /api/safety/events/{id}``). Otherwise ``status`` is ``dispatched``: its dispatch is
    scheduled once the request commits (follow it at ``GET /api/commands/{commandId}``:
    ``acked`` when the device's own state confirms it). A retried request with the same
    ``correlationId`` returns the first command. ``hazardEventId`` and ``missing`` are
    deprecated aliases of ``pendingHazard.eventId`` and ``pendingHazard.missing``, kept
    for one release.

    ``print_start`` is a print job (issue 16): the answer is ``status: queued`` with its
    ``jobId`` (``commandId`` null), once it is recorded; the job is queued on the printer,
    started by the service, followed and watched (docs/fabrication.md). The file is your
    newest upload of that name, or else one on the printer's own storage. A print that
    cannot start now is refused now, as any command (403 locked, 409 offline, busy or the
    last print still on the bed, 422 the file name). Engineers may ask for it (they queue
    prints); every other intent needs the operator, safety or admin role."""
    if body.intent != print_requests.PRINT_INTENT and not caller.has_any(*_FLOOR_ROLES):
        raise PermissionDenied(f"this needs the {' or '.join(r.value for r in _FLOOR_ROLES)} role")
    if body.safety_signature is not None:
        # Approvals are signed per approver over the event's payload, not by the requester.
        raise ValidationFailed(
            "safetySignature",
            "a hazardous command is approved with POST /api/safety/events/{id}/approve "
            "(kittylab approve), not with a signature on the request",
        )
    if body.intent == print_requests.PRINT_INTENT:
        queued = print_requests.request_print(
            uow,
            c.artifacts,
            jobs=c.jobs,
            device_id=device_id,
            payload=body.payload,
            requester=caller,
            now=c.clock(),
            via="command",
            correlation_id=body.correlation_id,
            scenes=c.settings.fabrication.scenes,
        )
        return CommandAccepted(command_id=None, status="queued", job_id=queued.job.id)
    requested = request_command(
        uow,
        jobs=c.jobs,
        bus=c.bus,
        device_id=device_id,
        intent=body.intent,
        payload=body.payload,
        requester=caller,
        correlation_id=body.correlation_id,
        now=c.clock(),
        safety_context=bootstrap.safety_context(c.settings),
    )
    command, held = requested.command, requested.held
    if held is not None:
        return CommandAccepted(
            command_id=command.id,
            status="awaiting_confirmation",
            pending_hazard=PendingHazard.model_validate(held.pending_hazard()),
            hazard_event_id=held.event.id,
            missing=held.missing,
        )
    return CommandAccepted(
        command_id=command.id, status="dispatched", hazard_event_id=command.safety_event_id
    )
