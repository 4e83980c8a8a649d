"""Housekeeping the periodic jobs run: devices that stopped reporting go offline, and old
telemetry is deleted.

A device is online because it reports (telemetry ingest sets ``online`` and ``last_seen``);
nothing else notices when it stops, so a device silent for longer than the configured
window is marked ``offline`` here. That includes a retired device that was still online:
it is not reporting either. A device in ``fault`` is left alone: that state says more than
silence does.

Telemetry is deleted in batches, each in its own short transaction, so one purge never
holds locks on many rows at once and ingest keeps flowing while it runs.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, TelemetryEvent
from kittylab.domain.enums import OnlineState

logger = logging.getLogger(__name__)


def mark_silent_devices_offline(session: Session, now: datetime, silent_for: timedelta) -> int:
    """Set ``offline`` on every ``online`` device whose ``last_seen`` is older than
    ``now - silent_for``; return how many. A device seen exactly ``silent_for`` ago stays
    online, and one never seen (``last_seen`` unset) is left as it is. Runs in the
    caller's unit of work.

    The condition is re-checked on each row as it is updated, so a report that lands
    concurrently (newer ``last_seen``) keeps its device online.
    """
    changed = session.scalars(
        update(Device)
        .where(Device.online_state == OnlineState.ONLINE)
        .where(Device.last_seen < now - silent_for)
        .values(online_state=OnlineState.OFFLINE)
        .returning(Device.external_id)
        .execution_options(synchronize_session=False)
    ).all()
    if changed:
        logger.info(
            "marked %d silent devices offline",
            len(changed),
            extra={"devices": sorted(changed)[:50]},
        )
    return len(changed)


def purge_old_telemetry(
    database: Database, now: datetime, retention: timedelta, *, batch_size: int
) -> int:
    """Delete telemetry events recorded before ``now - retention``, at most ``batch_size``
    per transaction, until none is left; return how many were deleted.

    Rows another transaction holds locked are skipped (the next run gets them), so the
    purge never waits on ingest or on a reader that locked rows.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cutoff = now - retention
    batch = (
        select(TelemetryEvent.id)
        .where(TelemetryEvent.recorded_at < cutoff)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    total = 0
    while True:
        with database.unit_of_work() as session:
            deleted = len(
                session.scalars(
                    delete(TelemetryEvent)
                    .where(TelemetryEvent.id.in_(batch.scalar_subquery()))
                    .returning(TelemetryEvent.id)
                    .execution_options(synchronize_session=False)
                ).all()
            )
        total += deleted
        if deleted < batch_size:
            break
    if total:
        logger.info(
            "deleted %d telemetry events recorded before %s",
            total,
            cutoff.isoformat(),
            extra={"deleted": total},
        )
    return total
