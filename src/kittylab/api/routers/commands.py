"""Giving devices commands."""

from __future__ import annotations

import logging
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, status

from kittylab.api.auth import UnitOfWork, container, require
from kittylab.api.schemas import CommandAccepted, CommandRequest
from kittylab.bootstrap import Container
from kittylab.domain.enums import Role
from kittylab.domain.errors import InfrastructureError, ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.services import dispatch

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["equipment"])

# Engineers design and print through fabrication jobs; driving equipment directly is for
# the people who run the floor.
CommandCaller = Annotated[Principal, Depends(require(Role.OPERATOR, Role.SAFETY, Role.ADMIN))]


@router.post(
    "/device/{device_id}/command",
    response_model=CommandAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        403: {"description": "A hazardous intent: it needs a signed approval."},
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
    """Accept a command for the device and send it in the background. ``status`` is
    ``dispatched`` once it is queued for sending (follow it at ``GET
    /api/commands/{commandId}``: ``acked`` when the device's own state confirms it). A
    retried request with the same ``correlationId`` returns the first command."""
    if body.safety_signature is not None:
        # Nothing can verify a signature yet: accepting one would suggest it was checked.
        raise ValidationFailed(
            "safetySignature", "signed approvals are not supported by this installation yet"
        )
    command = dispatch.submit(
        uow,
        device_id=device_id,
        intent=body.intent,
        payload=body.payload,
        requested_by=caller.user_id,
        correlation_id=body.correlation_id,
        now=c.clock(),
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
    return CommandAccepted(command_id=command.id, status=accepted_status, hazard_event_id=None)
