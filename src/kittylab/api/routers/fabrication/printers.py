"""``/api/fabrication/printers``: a printer's queue — confirming its bed is clear."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from kittylab.api.auth import UnitOfWork, container
from kittylab.api.routers.fabrication.callers import PrintCaller
from kittylab.api.schemas import BedClearOut
from kittylab.bootstrap import Container
from kittylab.fabrication import jobs as fabrication

router = APIRouter(prefix="/api/fabrication/printers", tags=["fabrication"])


@router.post("/{device_id}/bed-clear", response_model=BedClearOut)
def confirm_bed_clear(
    device_id: UUID,
    caller: PrintCaller,
    uow: UnitOfWork,
    c: Annotated[Container, Depends(container)],
) -> BedClearOut:
    """Confirm the printer's bed is empty, so its next queued job may start."""
    covered = fabrication.confirm_bed_clear(uow, device_id, caller.user_id, c.clock(), jobs=c.jobs)
    return BedClearOut(device_id=device_id, jobs_cleared=covered)
