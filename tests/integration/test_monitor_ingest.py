"""Monitor events from detectors on MQTT: recorded with evidence, failures pause."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import PrintMonitorEvent
from kittylab.domain.enums import FabricationStatus, MonitorEventType
from tests.integration.live_bus import eventually, live_lab, running_bus
from tests.integration.print_lab import PrintLab
from tests.peers.camera_peer import CameraPeer


def test_a_detector_failure_on_mqtt_is_recorded_with_its_snapshot_and_pauses_the_print(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("clip.gcode")

    async def scenario(snapshot_url: str) -> str:
        async with live_lab(lab.container) as (bus, fleet, wired):
            ingest = bootstrap.monitor_ingest(wired)
            assert ingest is not None
            ingest.attach(bus)
            created = await lab.start(wired, printer, key)
            job_id = str(created["id"])
            async with running_bus(bus.address, "detector") as detector:
                detector.publish(f"kitty/monitor/{job_id}", b"{not json")
                detector.publish(
                    f"kitty/monitor/{job_id}",
                    {
                        "eventType": "spaghetti_detected",
                        "confidence": 0.91,
                        "snapshotUrl": snapshot_url,
                        "details": {"detector": "obico"},
                    },
                )
                await eventually(lambda: monitor_events(lab.database) == 1, within=10)
            await lab.work_queue(wired)
            assert fleet.devices[printer].snapshot()["state"] == "paused"
            return job_id

    with CameraPeer() as camera:
        job_id = asyncio.run(scenario(camera.serve("/cam.jpg")))
    with lab.database.unit_of_work() as s:
        event = s.scalars(select(PrintMonitorEvent)).one()
    assert event.event_type is MonitorEventType.SPAGHETTI_DETECTED
    assert event.details["source"] == "mqtt"
    assert event.snapshot_key is not None and event.snapshot_key.startswith(f"snapshots/{job_id}/")
    assert lab.container.artifacts is not None and lab.container.artifacts.exists(
        event.snapshot_key
    )
    assert lab.job(job_id).status is FabricationStatus.PRINTING  # until the tracker looks


def monitor_events(database: Database) -> int:
    with database.unit_of_work() as s:
        return len(s.scalars(select(PrintMonitorEvent.id)).all())
