"""The server's print tracker: the single follower of active print jobs.

Every round it reads each active job's printer through its driver, moves the job
(``fabrication.apply_printer_state``), publishes the job's progress retained on
``kitty/jobs/<id>``, runs the job profile's scene when a print starts, and when a job
ends records the ``completed`` monitor event and tells whoever started it (and that the
bed needs clearing before the next job). The scene's commands and the end-of-job records
are written in the transaction that moves the job, so a crash loses neither without the
other; their jobs are registered on that unit of work and deferred once it commits, and
the periodic sweeps pick up whatever a crash left unscheduled.
A job whose printer cannot be read (or, for a self-reporting printer, is offline) for
``fabrication.printer_lost_after_seconds`` fails with the reason, and its owner is told:
a printer that went away mid-job never blocks its queue for good.
A polled printer's read that moves its job is also stored as the printer's last known
state, so the commands checked against that state (a failure's pause, a cancel, the next
start) agree with the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, FabricationJob
from kittylab.adapters.db.unit_of_work import UnitOfWork
from kittylab.config import FabricationSettings, NotifySettings
from kittylab.devices import dispatch
from kittylab.devices.poller import SELF_REPORTING
from kittylab.devices.ports import DeviceDriver, DeviceTarget, DeviceUnavailable
from kittylab.devices.requests import request_command
from kittylab.domain import topics
from kittylab.domain.actuation import SystemActor
from kittylab.domain.enums import FabricationStatus, MonitorEventType, OnlineState
from kittylab.domain.errors import KittyLabError
from kittylab.domain.print_queue import FINISHED
from kittylab.fabrication import job_details
from kittylab.fabrication import jobs as fabrication
from kittylab.fabrication import records as fabrication_records
from kittylab.ports import JobQueue, MessageBus
from kittylab.records import alerts

log = logging.getLogger(__name__)

INTERRUPTED_START_GRACE = timedelta(minutes=2)
"""A job claimed for starting but with no start command after this long was interrupted."""


class PrintTracker:
    def __init__(
        self,
        database: Database,
        drivers: Mapping[str, DeviceDriver],
        jobs: JobQueue,
        clock: Callable[[], datetime],
        settings: FabricationSettings,
        notify: NotifySettings,
        bus: MessageBus | None = None,
    ) -> None:
        self._database = database
        self._drivers = drivers
        self._jobs = jobs
        self._clock = clock
        self._settings = settings
        self._notify = notify
        self._bus = bus

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:
                log.exception("print tracker round failed; retrying")
            await asyncio.sleep(self._settings.tracker_interval_seconds)

    async def round(self) -> int:
        """Follow every active job once; returns how many changed status."""
        await asyncio.to_thread(
            fabrication.requeue_interrupted_starts,
            self._database,
            self._clock(),
            INTERRUPTED_START_GRACE,
        )
        changed = 0
        lost_after = timedelta(seconds=self._settings.printer_lost_after_seconds)
        for job in await asyncio.to_thread(fabrication.active_jobs, self._database):
            target, offline = await asyncio.to_thread(self._target, job.device_id)
            state, problem = await self._state(target)
            if offline and target.integration in SELF_REPORTING:
                # What such a driver holds is the last state the device published, however
                # old: an offline device's is no news about the print.
                state, problem = None, "the printer is offline: it stopped reporting"
            moved = await asyncio.to_thread(
                fabrication.apply_printer_state,
                self._database,
                job,
                state,
                self._clock(),
                record_state=target.integration not in SELF_REPORTING,
                lost_after=lost_after,
                unreadable=problem,
                follow_up=self._follow_up,
            )
            self._publish(job.id, job.device_id, moved or job.status, state)
            if moved is not None:
                changed += 1
        return changed

    def _follow_up(self, uow: UnitOfWork, job: FabricationJob, previous: FabricationStatus) -> None:
        """What a job's move entails, recorded in the transaction of the move (a crash
        between the two would otherwise lose a finished job's notification for good), and
        scheduled once it commits: the scene's commands dispatched, the end-of-job
        notification delivered, the printer's queue looked at. A schedule that fails is
        left to the periodic sweeps (command reconciliation, the notification sweep, the
        queues' minutely look)."""
        if job.status is FabricationStatus.PRINTING and previous is FabricationStatus.PREPARING:
            self._scene(uow, job)
        elif job.status in FINISHED:
            for notification_id in self._finished(uow, job):
                uow.after_commit(self._jobs.defer_notification, notification_id)
            uow.after_commit(self._jobs.defer_start_next, job.device_id)

    def _target(self, device_id: UUID) -> tuple[DeviceTarget, bool]:
        """The printer, and whether its records call it offline."""
        with self._database.unit_of_work() as session:
            device = session.get(Device, device_id)
            assert device is not None
            return dispatch.target_of(device), device.online_state is OnlineState.OFFLINE

    async def _state(self, target: DeviceTarget) -> tuple[dict[str, Any] | None, str | None]:
        """The printer's state, or None and why it could not be read."""
        driver = self._drivers.get(target.integration)
        if driver is None:
            return None, f"no driver is configured for integration {target.integration}"
        try:
            return await driver.state(target), None
        except (DeviceUnavailable, KittyLabError) as exc:
            log.info("printer %s could not be read: %s", target.external_id, exc)
            return None, str(exc)

    def _publish(
        self,
        job_id: UUID,
        device_id: UUID,
        status: FabricationStatus,
        state: Mapping[str, Any] | None,
    ) -> None:
        if self._bus is None:
            return
        progress = (state or {}).get("progress")
        self._bus.publish(
            topics.job(job_id),
            {
                "jobId": str(job_id),
                "deviceId": str(device_id),
                "status": status.value,
                "progress": progress,
                "printer": (state or {}).get("state"),
                "at": self._clock().isoformat(),
            },
            retain=True,
        )

    def _scene(self, uow: UnitOfWork, job: FabricationJob) -> list[UUID]:
        """The job profile's scene for the printer's zone, as commands, dispatched once
        the move commits. A step that cannot run (a device offline, a hazardous intent) is
        skipped and logged: a scene is comfort, it never blocks a print."""
        printer = uow.get(Device, job.device_id)
        assert printer is not None
        steps = self._settings.scenes.get(job_details.read(job).job_profile, [])
        zone_devices = list(
            uow.scalars(
                select(Device).where(Device.zone_id == printer.zone_id, Device.retired_at.is_(None))
            )
        )
        sent: list[UUID] = []
        for step in steps:
            for device in zone_devices:
                if device.kind.value != step.get("kind"):
                    continue
                try:
                    # A savepoint: a refused step leaves the job's move and the others.
                    with uow.begin_nested():
                        requested = request_command(
                            uow,
                            jobs=self._jobs,
                            device_id=device.id,
                            intent=str(step.get("intent")),
                            payload=step.get("payload") or {},
                            requester=SystemActor("print tracker scene", job.requested_by),
                            correlation_id=f"scene:{job.id}:{device.id}:{step.get('intent')}",
                            now=self._clock(),
                        )
                    sent.append(requested.command.id)
                except KittyLabError as exc:
                    log.info("scene step %s on %s skipped: %s", step, device.external_id, exc)
        log.info("scene for job %s in zone %s: %d commands", job.id, printer.zone_id, len(sent))
        return sent

    def _finished(self, session: Session, job: FabricationJob) -> list[UUID]:
        """Record the end of a job: the printer's own word that the part is done (the
        ``completed`` monitor event), and the notification telling whoever started it,
        with the reason and that the bed needs clearing."""
        if job.status is FabricationStatus.COMPLETED:
            fabrication_records.record_monitor_event(
                session,
                fabrication_job_id=job.id,
                event_type=MonitorEventType.COMPLETED,
                confidence=1.0,
                snapshot_key=None,
                details={"source": "printer state"},
                now=self._clock(),
            )
        printer = session.get(Device, job.device_id)
        name = printer.display_name if printer else "the printer"
        details = job_details.read(job)
        reason = details.reason
        title = f"Print {job.status.value} on {name}"
        body = f"{details.source_name or job.gcode_path}: {job.status.value}"
        if reason:
            body += f" ({reason})"
        body += f". Clear the bed of {name} and confirm it before the next job starts."
        rows = alerts.notify_person(
            session,
            job.requested_by,
            title,
            body,
            self._notify,
            related_job_id=job.id,
            idempotency_key=f"job-finished:{job.id}",
        )
        return [row.id for row in rows]
