"""``/api/commands``: the commands given to devices, for the person who gave them and the
safety and admin roles. A command is given with ``POST /api/device/{id}/command``
(``devices.py``)."""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy import select

from kittylab.adapters.db.tables import DeviceCommand
from kittylab.api.auth import Caller, UnitOfWork
from kittylab.api.pagination import CursorParam, Limit, Page, paginate
from kittylab.api.routers import get_or_404, where_equal
from kittylab.api.schemas import CommandOut
from kittylab.domain.enums import CommandStatus
from kittylab.domain.errors import PermissionDenied

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/commands", tags=["equipment"])


@router.get("", response_model=Page[CommandOut])
def list_commands(
    caller: Caller,
    uow: UnitOfWork,
    limit: Limit = 50,
    cursor: CursorParam = None,
    device_id: Annotated[UUID | None, Query(alias="deviceId")] = None,
    status_: Annotated[CommandStatus | None, Query(alias="status")] = None,
    conversation_id: Annotated[UUID | None, Query(alias="conversationId")] = None,
) -> Page[CommandOut]:
    stmt = where_equal(
        select(DeviceCommand),
        (DeviceCommand.device_id, device_id),
        (DeviceCommand.status, status_),
        (DeviceCommand.conversation_id, conversation_id),
    )
    if not caller.reads_all_records:
        stmt = stmt.where(DeviceCommand.requested_by == caller.user_id)
    return paginate(uow, stmt, DeviceCommand.id, cursor, limit, CommandOut.model_validate)


@router.get("/{command_id}", response_model=CommandOut)
def get_command(command_id: UUID, caller: Caller, uow: UnitOfWork) -> DeviceCommand:
    """A command, for the person who gave it and the safety and admin roles."""
    row = get_or_404(uow, DeviceCommand, command_id, "command")
    if not caller.reads_all_records and row.requested_by != caller.user_id:
        raise PermissionDenied("only the safety and admin roles read others' commands")
    return row
