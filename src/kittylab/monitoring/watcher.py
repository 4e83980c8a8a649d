"""The print watcher: looks at every printing job and acts on what it sees.

Each round (``monitoring.frame_interval_seconds``), for every job that is printing:

- reads its printer's state through the driver and keeps a short history, judged by the
  telemetry rules (thermal runaway, temperature deviation, progress stall, filament
  runout, and each heater against the printer's declared limit, its G-code policy —
  ``domain.print_telemetry_rules``);
- when a failure detector is configured and a camera in the printer's zone has a
  ``snapshot_url`` in its connection, has the detector score the camera's current image
  and smooths the scores over the print Obico's way (``domain.print_monitoring``);
- turns each new warning or failure into a monitor event through ``reports.report``
  (failures pause the job; both notify), with evidence: the camera snapshot, or — when no
  camera can give one — the telemetry window that triggered the rule, as JSON, so a
  failure is never recorded without something to look at. A thermal runaway or a heater
  past the printer's limit also cools the printer down (pausing does not necessarily turn
  heaters off).

When a printing job's first layer is laid (``domain.first_layer``: progress past
``monitoring.first_layer_progress``) and it has had no failure alert, the watcher records
``first_layer_ok`` — once per job, checked against the database, so a restart or a
pause and resume does not record it twice.

One alert per job and (condition, part, severity): a failing print stays failing frame
after frame and must not page the operator every ten seconds. The smoothing state and
histories live in this process; a restart starts them over (the long-term baseline of a
camera is then rebuilt from the next print).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, FabricationJob, PrintMonitorEvent
from kittylab.config import MonitoringSettings, NotifySettings
from kittylab.devices import dispatch
from kittylab.devices.ports import DeviceDriver, DeviceTarget
from kittylab.devices.requests import request_command
from kittylab.domain.actuation import SystemActor
from kittylab.domain.enums import FabricationStatus, MonitorEventType
from kittylab.domain.errors import KittyLabError, ValidationFailed
from kittylab.domain.first_layer import first_layer_done
from kittylab.domain.gcode_policy import DEFAULT_POLICY, GcodePolicy, policy_from_attributes
from kittylab.domain.print_monitoring import (
    DetectionState,
    Severity,
    SmoothingParams,
    Verdict,
    start_new_print,
    update,
)
from kittylab.domain.print_telemetry_rules import (
    PrinterSample,
    TelemetryRules,
    evaluate_telemetry,
    trim_history,
)
from kittylab.fabrication import records as fabrication_records
from kittylab.monitoring import cameras, reports
from kittylab.monitoring import follow_ups as monitor_follow_ups
from kittylab.monitoring.ports import FailureDetector, SnapshotSource
from kittylab.ports import JobQueue
from kittylab.records.ports import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watched:
    job_id: UUID
    printer: DeviceTarget
    camera_url: str | None
    policy: GcodePolicy = DEFAULT_POLICY
    """The printer's declared limits, which its heaters must never pass."""


class PrintWatcher:
    def __init__(
        self,
        database: Database,
        drivers: Mapping[str, DeviceDriver],
        store: ArtifactStore,
        jobs: JobQueue,
        clock: Callable[[], datetime],
        settings: MonitoringSettings,
        notify: NotifySettings,
        *,
        detector: FailureDetector | None = None,
        snapshots: SnapshotSource | None = None,
        simulated_cameras: str | None = None,
    ) -> None:
        self._simulated_cameras = simulated_cameras
        self._database = database
        self._drivers = drivers
        self._store = store
        self._jobs = jobs
        self._clock = clock
        self._settings = settings
        self._notify = notify
        self._detector = detector
        self._snapshots = snapshots
        self._rules = TelemetryRules(
            stall_warning_s=settings.stall_warning_seconds,
            stall_failure_s=settings.stall_failure_seconds,
            runout_consecutive_readings=settings.runout_readings,
        )
        self._smoothing = SmoothingParams(sensitivity=settings.sensitivity)
        self._history: dict[UUID, tuple[PrinterSample, ...]] = {}
        self._camera: dict[UUID, DetectionState] = {}  # per printer: its baseline lives on
        self._camera_job: dict[UUID, UUID] = {}
        self._alerted: dict[UUID, set[tuple[str, str | None, str]]] = {}
        self._first_layer_settled: set[UUID] = set()
        """Jobs whose first layer is recorded, or that failed before it: no more looks."""

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:
                log.exception("print watch round failed; retrying")
            await asyncio.sleep(self._settings.frame_interval_seconds)

    async def round(self) -> list[Verdict]:
        """Watch every printing job once; returns the alerts raised this round."""
        watched = await asyncio.to_thread(self._printing)
        live = {w.job_id for w in watched}
        for job_id in list(self._history):
            if job_id not in live:  # finished or paused: its history is done
                self._history.pop(job_id, None)
                self._alerted.pop(job_id, None)
                self._first_layer_settled.discard(job_id)
        raised: list[Verdict] = []
        for item in watched:
            try:
                raised.extend(await self._watch(item))
            except Exception:
                # One printer's trouble (a store outage while saving evidence) must not
                # stop the others being watched; its alert is raised again next round.
                log.exception("watch: job %s could not be watched this round", item.job_id)
        return raised

    def _printing(self) -> list[Watched]:
        with self._database.unit_of_work() as session:
            rows = session.execute(
                select(FabricationJob.id, Device)
                .join(Device, Device.id == FabricationJob.device_id)
                .where(FabricationJob.status == FabricationStatus.PRINTING)
            ).all()
            watched = []
            for job_id, printer in rows:
                watched.append(
                    Watched(
                        job_id,
                        dispatch.target_of(printer),
                        cameras.zone_camera_url(
                            session,
                            printer.zone_id,
                            printer.attributes.get("camera"),
                            simulated=self._simulated_cameras,
                        ),
                        _policy(printer),
                    )
                )
            return watched

    async def _watch(self, item: Watched) -> list[Verdict]:
        verdicts: list[Verdict] = []
        state: dict[str, Any] | None = None
        driver = self._drivers.get(item.printer.integration)
        if driver is not None:
            try:
                state = await driver.state(item.printer)
            except KittyLabError as exc:
                log.info("watch: %s unreadable: %s", item.printer.external_id, exc)
            else:
                now = self._clock()
                history = (*self._history.get(item.job_id, ()), PrinterSample(now, state))
                history = trim_history(history, now, self._rules.history_seconds)
                self._history[item.job_id] = history
                verdicts.extend(evaluate_telemetry(history, self._rules, item.policy))
        if self._detector is not None and item.camera_url is not None:
            camera_verdict = await self._look(item)
            if camera_verdict is not None:
                verdicts.append(camera_verdict)
        raised = []
        for verdict in verdicts:
            if not verdict.severity.alerts:
                continue
            key = (verdict.condition.value, verdict.subject, verdict.severity.value)
            seen = self._alerted.setdefault(item.job_id, set())
            if key in seen:
                continue
            if await self._raise(item, verdict):
                seen.add(key)  # only once it was recorded: a failed attempt is retried
                raised.append(verdict)
        if (
            state is not None
            and item.job_id not in self._first_layer_settled
            and first_layer_done(state, self._settings.first_layer_progress)
        ):
            await asyncio.to_thread(self._first_layer, item.job_id, state.get("progress"))
            self._first_layer_settled.add(item.job_id)
        return raised

    def _first_layer(self, job_id: UUID, progress: object) -> None:
        """Record ``first_layer_ok`` unless the job already has it or had a failure
        alert (a failing print's first layer is not "ok", whatever its progress)."""
        with self._database.unit_of_work() as session:
            # Locked: one record per job, whichever watcher round or process gets here.
            session.get(FabricationJob, job_id, with_for_update=True)
            for event_type, details in session.execute(
                select(PrintMonitorEvent.event_type, PrintMonitorEvent.details).where(
                    PrintMonitorEvent.fabrication_job_id == job_id
                )
            ):
                if event_type is MonitorEventType.FIRST_LAYER_OK:
                    return
                if details.get("severity") == reports.Severity.FAILURE.value:
                    return
            fabrication_records.record_monitor_event(
                session,
                fabrication_job_id=job_id,
                event_type=MonitorEventType.FIRST_LAYER_OK,
                confidence=1.0,
                snapshot_key=None,
                details={
                    "source": "print watcher",
                    "progress": progress,
                    "threshold": self._settings.first_layer_progress,
                },
                now=self._clock(),
            )

    async def _look(self, item: Watched) -> Verdict | None:
        assert self._detector is not None
        assert item.camera_url is not None
        device_id = item.printer.id
        state = self._camera.get(device_id, DetectionState())
        if self._camera_job.get(device_id) != item.job_id:
            state = start_new_print(state)
            self._camera_job[device_id] = item.job_id
        try:
            detections = await self._detector.detect(item.camera_url)
        except KittyLabError as exc:  # an unreadable frame is skipped, not a clean one
            log.info("watch: detector skipped a frame of %s: %s", item.printer.external_id, exc)
            return None
        state, verdict = update(state, detections, self._smoothing)
        self._camera[device_id] = state
        return verdict

    async def _raise(self, item: Watched, verdict: Verdict) -> bool:
        """Record the alert and act on it; False when it could not be recorded."""
        evidence = await self._evidence(item, verdict)
        failure = verdict.severity is Severity.FAILURE
        outcome = await asyncio.to_thread(self._report, item, verdict, evidence, failure)
        if outcome is None:
            return False
        if failure and verdict.condition.needs_cooldown:
            await asyncio.to_thread(self._cooldown, item, outcome.event.id, verdict.condition.value)
        return True

    async def _evidence(self, item: Watched, verdict: Verdict) -> str:
        """The key of what an operator should look at: the camera's image when there is
        one, else the telemetry window the rule judged."""
        stamp = f"{self._clock():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        if item.camera_url is not None and self._snapshots is not None:
            try:
                snapshot = await self._snapshots.fetch(item.camera_url)
            except KittyLabError as exc:
                log.warning("watch: no snapshot from %s: %s", item.printer.external_id, exc)
            else:
                suffix = "png" if "png" in snapshot.content_type else "jpg"
                key = f"snapshots/{item.job_id}/{stamp}-camera.{suffix}"
                await asyncio.to_thread(
                    self._store.put_bytes, key, snapshot.data, content_type=snapshot.content_type
                )
                return key
        window = [
            {"at": s.at.isoformat(), "state": dict(s.state)}
            for s in self._history.get(item.job_id, ())
        ]
        body = json.dumps({"verdict": verdict.details(), "telemetry": window}, default=str)
        key = f"snapshots/{item.job_id}/{stamp}-telemetry.json"
        await asyncio.to_thread(
            self._store.put_bytes, key, body.encode(), content_type="application/json"
        )
        return key

    def _report(
        self, item: Watched, verdict: Verdict, evidence: str, failure: bool
    ) -> reports.MonitorOutcome | None:
        try:
            with self._database.unit_of_work() as session:
                return reports.report(
                    session,
                    jobs=self._jobs,
                    job_id=item.job_id,
                    event_type=verdict.condition.failure_event_type,
                    confidence=verdict.confidence,
                    snapshot_key=evidence,
                    severity=reports.Severity.FAILURE if failure else reports.Severity.WARNING,
                    details={**verdict.details(), "source": "print watcher"},
                    notify=self._notify,
                    now=self._clock(),
                )
        except KittyLabError:
            log.exception("watch: could not record %s on job %s", verdict.condition, item.job_id)
            return None

    def _cooldown(self, item: Watched, event_id: UUID, condition: str) -> UUID | None:
        """Ask for the cooldown, linked to the failure's event: if it fails, the operator
        is told (``follow_ups``). One per job and condition: a retried round joins
        the cooldown already asked for. Dispatched once its transaction commits."""
        try:
            with self._database.unit_of_work() as uow:
                job = uow.get(FabricationJob, item.job_id, with_for_update=True)
                assert job is not None
                requested = request_command(
                    uow,
                    jobs=self._jobs,
                    device_id=item.printer.id,
                    intent="printer_cooldown",
                    payload={},
                    requester=SystemActor("print watcher cooldown", job.requested_by),
                    correlation_id=f"{condition}-cooldown:{item.job_id}",
                    now=self._clock(),
                )
                monitor_follow_ups.link(job, requested.command.id, event_id, "printer_cooldown")
                return requested.command.id
        except KittyLabError as exc:
            log.warning("watch: could not cool %s down: %s", item.printer.external_id, exc)
            return None


def _policy(printer: Device) -> GcodePolicy:
    """The printer's declared limits; the defaults when they cannot be read (its jobs
    and heating commands are refused meanwhile, but a print already running is still
    held to a ceiling)."""
    try:
        return policy_from_attributes(printer.attributes)
    except ValidationFailed as exc:
        log.warning("watch: %s has an unreadable G-code policy (%s)", printer.external_id, exc)
        return DEFAULT_POLICY
