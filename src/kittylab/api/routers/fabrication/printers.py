"""``/api/fabrication/printers``: a printer's queue — confirming its bed is clear."""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from kittylab.api.auth import UnitOfWork, container
from kittylab.api.routers.fabrication.callers import PrintCaller
from kittylab.api.schemas import BedClearOut
from kittylab.bootstrap import Container
from kittylab.domain.errors import InfrastructureError
from kittylab.fabrication import jobs as fabrication

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/fabrication/printers", tags=["fabrication"])


@router.post("/{device_id}/bed-clear", response_model=BedClearOut)
def confirm_bed_clear(
    device_id: UUID,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> BedClearOut:
    """Confirm the printer's bed is empty, so its next queued job may start."""
    covered = fabrication.confirm_bed_clear(uow, device_id, caller.user_id, c.clock())
    uow.commit()
    try:
        c.jobs.defer_start_next(device_id)
    except InfrastructureError:
        log.warning("print queue of %s left to the periodic task", device_id)
    return BedClearOut(device_id=device_id, jobs_cleared=covered)
