"""Print monitor events from the bus: detectors publish on ``kitty/monitor/<job_id>``.

Payload (JSON)::

    {"eventType": "spaghetti_detected", "confidence": 0.93, "severity": "failure",
     "snapshotUrl": "http://cam.lab/snap.jpg" | "snapshotKey": "snapshots/<job>/…",
     "details": {...}}

Only a detector identity may publish here (``domain.bus_acl``: not devices, not even
KittyLab's own clients; both the embedded broker and the Mosquitto ACL of ``kittylab mqtt
config`` enforce it), so an event heard here came from a detector. Still, a detector is
not trusted to point the server anywhere: its ``snapshotUrl`` is fetched only when it is
on one of the lab's declared cameras (``domain.camera_hosts``; a redirect may not leave
it), through the snapshot source's limits (timeout, size, images only). When that gives
no image, the evidence is the printer's own camera's snapshot, else the detector's report
as JSON; an error text is never stored as evidence (why there was no image goes in the
event's ``details.snapshot_unavailable``). An event that cannot be understood or recorded
is logged and counted, never raised: one bad detector must not stop the others. What a
recorded event leads to (pause, notifications) is ``reports.report``'s business, exactly
as for the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, FabricationJob
from kittylab.config import NotifySettings
from kittylab.domain import camera_hosts, topics
from kittylab.domain.enums import MonitorEventType
from kittylab.domain.errors import KittyLabError
from kittylab.monitoring import cameras, reports
from kittylab.monitoring.ports import SnapshotSource
from kittylab.ports import JobQueue, MessageBus
from kittylab.records.ports import ArtifactStore

log = logging.getLogger(__name__)

MONITOR_WILDCARD = topics.MONITOR_WILDCARD
EVIDENCE_REQUIRED = frozenset({MonitorEventType.SPAGHETTI_DETECTED, MonitorEventType.NOZZLE_CLOG})
"""The events whose record needs evidence (the table's ``failure_needs_snapshot``)."""
MONITOR_EVENTS = Counter(
    "kittylab_monitor_events_total", "Print monitor events from the bus by outcome.", ["outcome"]
)


class MonitorIngest:
    def __init__(
        self,
        database: Database,
        store: ArtifactStore,
        jobs: JobQueue,
        clock: Callable[[], datetime],
        notify: NotifySettings,
        snapshots: SnapshotSource | None,
        simulated_cameras: str | None = None,
    ) -> None:
        self._simulated_cameras = simulated_cameras
        self._database = database
        self._store = store
        self._jobs = jobs
        self._clock = clock
        self._notify = notify
        self._snapshots = snapshots
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, bus: MessageBus) -> None:
        bus.subscribe(MONITOR_WILDCARD, self.on_message)

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Hand the event to its own task: fetching a snapshot and writing the records must
        not hold up the bus, which carries every device's state."""
        task = asyncio.create_task(self._process(topic, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, topic: str, payload: bytes) -> None:
        try:
            job_id = UUID(topic.rsplit("/", 1)[-1])
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            event_type = MonitorEventType(str(message["eventType"]))
            confidence = float(message["confidence"])
            severity = message.get("severity")
            level = reports.Severity(severity) if severity else None
        except (ValueError, KeyError, TypeError) as exc:
            MONITOR_EVENTS.labels("malformed").inc()
            log.warning("ignoring a malformed monitor event on %s: %s", topic, exc)
            return
        try:
            snapshot_key, unavailable = await self._snapshot(job_id, message, event_type)
            await asyncio.to_thread(
                self._report, job_id, event_type, confidence, level, snapshot_key, message,
                unavailable,
            )  # fmt: skip
        except KittyLabError as exc:
            MONITOR_EVENTS.labels("refused").inc()
            log.warning("monitor event on %s refused: %s", topic, exc)
            return
        MONITOR_EVENTS.labels("recorded").inc()

    async def _snapshot(
        self, job_id: UUID, message: dict[str, Any], event_type: MonitorEventType
    ) -> tuple[str | None, str | None]:
        """The evidence key for the event, and why the detector's image was not used (or
        None)."""
        key = message.get("snapshotKey")
        if not isinstance(key, str) or not key.startswith(f"snapshots/{job_id}/"):
            key = None
        if key is not None and await asyncio.to_thread(self._store.exists, key):
            return key, None
        declared, own_camera = await asyncio.to_thread(self._cameras, job_id)
        url = message.get("snapshotUrl")
        unavailable: str | None = None
        candidates: list[str] = []
        if isinstance(url, str):
            if camera_hosts.is_declared(url, declared):
                candidates.append(url)
            else:
                MONITOR_EVENTS.labels("undeclared_snapshot_host").inc()
                unavailable = "the detector's snapshot URL is not on a declared camera"
        if own_camera is not None and own_camera not in candidates:
            candidates.append(own_camera)
        if self._snapshots is not None:
            for candidate in candidates:
                try:
                    snapshot = await self._snapshots.fetch(candidate)
                except KittyLabError as exc:
                    log.warning("monitor snapshot unavailable: %s", exc)
                    unavailable = str(exc)
                    continue
                suffix = "png" if "png" in snapshot.content_type else "jpg"
                stored = f"{self._prefix(job_id)}.{suffix}"
                await asyncio.to_thread(
                    self._store.put_bytes, stored, snapshot.data, content_type=snapshot.content_type
                )
                return stored, unavailable  # why the detector's own URL was not used
        if not candidates and unavailable is None:
            unavailable = "no camera image was given and no declared camera watches the printer"
        if event_type not in EVIDENCE_REQUIRED:
            return None, unavailable
        # A failure must still pause the print, and its record needs evidence: keep what
        # the detector reported, and only that (never an error text, never a fetched body).
        report: dict[str, Any] = {
            "eventType": event_type.value,
            "confidence": message.get("confidence"),
            "details": message.get("details") if isinstance(message.get("details"), dict) else {},
        }
        stored = f"{self._prefix(job_id)}-report.json"
        body = json.dumps({"report": report}, default=str)
        await asyncio.to_thread(
            self._store.put_bytes, stored, body.encode(), content_type="application/json"
        )
        return stored, unavailable

    def _prefix(self, job_id: UUID) -> str:
        return f"snapshots/{job_id}/{self._clock():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"

    def _cameras(self, job_id: UUID) -> tuple[frozenset[camera_hosts.Origin], str | None]:
        """The lab's declared camera origins, and the camera watching the job's printer."""
        with self._database.unit_of_work() as session:
            declared = cameras.lab_camera_origins(session, simulated=self._simulated_cameras)
            printer = session.scalar(
                select(Device)
                .join(FabricationJob, FabricationJob.device_id == Device.id)
                .where(FabricationJob.id == job_id)
            )
            own = (
                cameras.zone_camera_url(
                    session,
                    printer.zone_id,
                    printer.attributes.get("camera"),
                    simulated=self._simulated_cameras,
                )
                if printer is not None
                else None
            )
        return declared, own

    def _report(
        self,
        job_id: UUID,
        event_type: MonitorEventType,
        confidence: float,
        level: reports.Severity | None,
        snapshot_key: str | None,
        message: dict[str, Any],
        unavailable: str | None,
    ) -> reports.MonitorOutcome:
        details = message.get("details")
        noted = {"snapshot_unavailable": unavailable} if unavailable else {}
        with self._database.unit_of_work() as session:
            return reports.report(
                session,
                jobs=self._jobs,
                job_id=job_id,
                event_type=event_type,
                confidence=confidence,
                snapshot_key=snapshot_key,
                severity=level,
                details={
                    **(details if isinstance(details, dict) else {}),
                    **noted,
                    "source": "mqtt",
                },
                notify=self._notify,
                now=self._clock(),
            )
