"""Print monitor events from the bus: detectors publish on ``kitty/monitor/<job_id>``.

Payload (JSON)::

    {"eventType": "spaghetti_detected", "confidence": 0.93, "severity": "failure",
     "snapshotUrl": "http://cam.lab/snap.jpg" | "snapshotKey": "snapshots/<job>/…",
     "details": {...}}

The bus is the detectors' trust boundary (a broker with ACLs on a lab network; loopback
for the embedded one), so a snapshot URL given here is fetched and kept as evidence —
through the snapshot source's limits (timeout, size, images only). An event that cannot
be understood or recorded is logged and counted, never raised: one bad detector must not
stop the others. What a recorded event leads to (pause, notifications) is
``reports.report``'s business, exactly as for the API.
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

from kittylab.adapters.db.engine import Database
from kittylab.config import NotifySettings
from kittylab.domain.enums import MonitorEventType
from kittylab.domain.errors import KittyLabError
from kittylab.monitoring import reports
from kittylab.monitoring.ports import SnapshotSource
from kittylab.ports import JobQueue, MessageBus
from kittylab.records.ports import ArtifactStore

log = logging.getLogger(__name__)

MONITOR_WILDCARD = "kitty/monitor/+"
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
    ) -> None:
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
            snapshot_key = await self._snapshot(job_id, message)
            await asyncio.to_thread(
                self._report, job_id, event_type, confidence, level, snapshot_key, message
            )
        except KittyLabError as exc:
            MONITOR_EVENTS.labels("refused").inc()
            log.warning("monitor event on %s refused: %s", topic, exc)
            return
        MONITOR_EVENTS.labels("recorded").inc()

    async def _snapshot(self, job_id: UUID, message: dict[str, Any]) -> str | None:
        key = message.get("snapshotKey")
        if isinstance(key, str) and key.startswith(f"snapshots/{job_id}/"):
            return key if await asyncio.to_thread(self._store.exists, key) else None
        url = message.get("snapshotUrl")
        if not isinstance(url, str) or self._snapshots is None:
            return None
        try:
            snapshot = await self._snapshots.fetch(url)
        except KittyLabError as exc:
            # The camera is away, but a failure must still pause the print: keep what the
            # detector said as the evidence instead.
            log.warning("monitor snapshot unavailable (%s); keeping the report instead", exc)
            key = f"snapshots/{job_id}/{self._clock():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}.json"
            body = json.dumps({"report": message, "snapshotError": str(exc)}, default=str)
            await asyncio.to_thread(
                self._store.put_bytes, key, body.encode(), content_type="application/json"
            )
            return key
        suffix = "png" if "png" in snapshot.content_type else "jpg"
        stored = f"snapshots/{job_id}/{self._clock():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}.{suffix}"
        await asyncio.to_thread(
            self._store.put_bytes, stored, snapshot.data, content_type=snapshot.content_type
        )
        return stored

    def _report(
        self,
        job_id: UUID,
        event_type: MonitorEventType,
        confidence: float,
        level: reports.Severity | None,
        snapshot_key: str | None,
        message: dict[str, Any],
    ) -> reports.MonitorOutcome:
        details = message.get("details")
        with self._database.unit_of_work() as session:
            return reports.report(
                session,
                jobs=self._jobs,
                job_id=job_id,
                event_type=event_type,
                confidence=confidence,
                snapshot_key=snapshot_key,
                severity=level,
                details={**(details if isinstance(details, dict) else {}), "source": "mqtt"},
                notify=self._notify,
                now=self._clock(),
            )
