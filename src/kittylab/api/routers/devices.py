"""``/api/devices`` and ``/api/device``: the lab's devices, their latest state, and giving
one a command (``POST /api/device/{id}/command``; the commands are read at
``/api/commands``). A device's locks are the lockout router's (``locks.py``)."""

from __future__ import annotations

import logging
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy import or_, select

from kittylab import bootstrap
from kittylab.adapters.db.tables import Device, SafetyEvent
from kittylab.api.auth import Caller, UnitOfWork, container, require
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import CommandAccepted, CommandRequest, DeviceOut, DeviceStateOut
from kittylab.bootstrap import Container
from kittylab.devices import dispatch, telemetry
from kittylab.domain import topics
from kittylab.domain.enums import DeviceKind, OnlineState, Role, SafetyStatus
from kittylab.domain.errors import InfrastructureError, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.safety import workflow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["lab"])

# Engineers design and print through fabrication jobs; driving equipment directly is for
# the people who run the floor.
CommandCaller = Annotated[Principal, Depends(require(Role.OPERATOR, Role.SAFETY, Role.ADMIN))]


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
    caller: CommandCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> CommandAccepted:
    """Accept a command for the device and send it in the background. A hazardous intent
    answers ``awaiting_confirmation`` with ``hazardEventId`` and what it still ``missing``:
    nothing is sent until the approvals are in (``GET /api/safety/events/{id}``). ``status``
    is ``dispatched`` once it is queued for sending (follow it at ``GET
    /api/commands/{commandId}``: ``acked`` when the device's own state confirms it). A
    retried request with the same ``correlationId`` returns the first command."""
    if body.safety_signature is not None:
        # Approvals are signed per approver over the event's payload, not by the requester.
        raise ValidationFailed(
            "safetySignature",
            "a hazardous command is approved with POST /api/safety/events/{id}/approve "
            "(kittylab approve), not with a signature on the request",
        )
    command = dispatch.submit(
        uow,
        device_id=device_id,
        intent=body.intent,
        payload=body.payload,
        requested_by=caller.user_id,
        correlation_id=body.correlation_id,
        now=c.clock(),
        safety_context=bootstrap.safety_context(c.settings),
    )
    if command.safety_event_id is not None and command.status.value == "pending":
        event = workflow.get(uow, command.safety_event_id)
        if event.status is SafetyStatus.PENDING:
            missing = workflow.view(
                uow, event, c.clock(), bootstrap.safety_context(c.settings).presence_ttl
            )["missing"]
            uow.commit()
            _announce(c, event)
            return CommandAccepted(
                command_id=command.id,
                status="awaiting_confirmation",
                hazard_event_id=event.id,
                missing=missing,
            )
    accepted_status: Literal["pending", "dispatched"] = "pending"
    if command.status.value == "pending":
        # Committed first, so the job can never run before the command exists.
        uow.commit()
        try:
            c.jobs.defer_dispatch(command.id)
            accepted_status = "dispatched"
        except InfrastructureError:
            # The command is stored; the minutely reconcile task sends it.
            log.warning("dispatch of command %s deferred to reconciliation", command.id)
    else:
        accepted_status = "dispatched"
    return CommandAccepted(
        command_id=command.id, status=accepted_status, hazard_event_id=command.safety_event_id
    )


def _announce(c: Container, event: SafetyEvent) -> None:
    """A held command is news for wall terminals and approvers' clients: the pending
    event goes out on ``kitty/safety/<eventId>`` like its later decision."""
    if c.bus is not None:
        c.bus.publish(topics.safety(event.id), workflow.event_message(event, c.clock()))
