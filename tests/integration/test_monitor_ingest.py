"""Monitor events from detectors on MQTT: recorded with evidence, failures pause; only a
detector's events count, snapshot URLs are fetched only from the lab's declared cameras,
and an error text is never kept as evidence (issue 13, "the bus's other doors")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import MqttBus
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, PrintMonitorEvent
from kittylab.domain import topics
from kittylab.domain.enums import FabricationStatus, MonitorEventType
from tests.integration.live_bus import eventually, lab_identities, live_lab, running_bus
from tests.integration.print_lab import PrintLab
from tests.peers.camera_peer import CameraPeer

SPAGHETTI = {"eventType": "spaghetti_detected", "confidence": 0.91, "details": {"by": "obico"}}


def declare_camera(lab: PrintLab, url: str | None) -> None:
    """The print farm's camera, declared with ``url`` as its snapshot URL (None: none)."""
    with lab.database.unit_of_work() as s:
        camera = s.scalars(select(Device).where(Device.external_id == "farm-cam")).one()
        camera.connection = {"snapshot_url": url} if url else {}


Scenario = Callable[[MqttBus, MqttBus, str], Awaitable[None]]


def run(lab: PrintLab, scenario: Scenario) -> tuple[str, str]:
    """A print running on the Prusa with the ingest on the bus; ``scenario(detector,
    service, job_id)``. Returns the job's id and the printer's state after the queue ran."""
    printer = lab["prusa-mk4"]
    key = lab.upload("clip.gcode")
    identities = lab_identities()
    credential = identities.issue_detector("obico")
    identities.save()

    async def main() -> tuple[str, str]:
        async with live_lab(lab.container) as (bus, fleet, wired):
            ingest = bootstrap.monitor_ingest(wired)
            assert ingest is not None
            ingest.attach(bus)
            created = await lab.start(wired, printer, key)
            job_id = str(created["id"])
            address = replace(
                bus.address, username=credential.username, password=credential.password
            )
            async with running_bus(address, "detector") as detector:
                await scenario(detector, bus, job_id)
            await lab.work_queue(wired)
            return job_id, str(fleet.devices[printer].snapshot()["state"])

    return asyncio.run(main())


def the_event(lab: PrintLab) -> PrintMonitorEvent:
    with lab.database.unit_of_work() as s:
        event: PrintMonitorEvent = s.scalars(select(PrintMonitorEvent)).one()
        s.expunge(event)
        return event


def stored(lab: PrintLab, key: str) -> bytes:
    assert lab.container.artifacts is not None
    return b"".join(lab.container.artifacts.read_chunks(key))


def test_a_detector_failure_on_mqtt_is_recorded_with_its_snapshot_and_pauses_the_print(
    lab: PrintLab,
) -> None:
    with CameraPeer() as camera:
        snapshot_url = camera.serve("/cam.jpg")
        declare_camera(lab, camera.url("/current.jpg"))

        async def scenario(detector: MqttBus, _: MqttBus, job_id: str) -> None:
            detector.publish(topics.monitor(job_id), b"{not json")
            detector.publish(topics.monitor(job_id), {**SPAGHETTI, "snapshotUrl": snapshot_url})
            await eventually(lambda: monitor_events(lab.database) == 1, within=10)

        job_id, printer_state = run(lab, scenario)
    assert printer_state == "paused"
    event = the_event(lab)
    assert event.event_type is MonitorEventType.SPAGHETTI_DETECTED
    assert event.details["source"] == "mqtt"
    assert event.snapshot_key is not None and event.snapshot_key.startswith(f"snapshots/{job_id}/")
    assert event.snapshot_key.endswith(".jpg")
    assert "snapshot_unavailable" not in event.details
    assert lab.job(job_id).status is FabricationStatus.PRINTING  # until the tracker looks


def test_a_monitor_event_from_kittylabs_own_client_is_not_a_detectors_and_counts_for_nothing(
    lab: PrintLab,
) -> None:
    async def scenario(detector: MqttBus, service: MqttBus, job_id: str) -> None:
        ok = {"eventType": "first_layer_ok", "confidence": 0.9}
        service.publish(topics.monitor(job_id), {**ok, "details": {"by": "service"}})
        await asyncio.sleep(0.7)
        assert monitor_events(lab.database) == 0
        detector.publish(topics.monitor(job_id), {**ok, "details": {"by": "obico"}})
        await eventually(lambda: monitor_events(lab.database) == 1, within=10)

    _, printer_state = run(lab, scenario)
    assert printer_state != "paused"
    event = the_event(lab)
    assert event.event_type is MonitorEventType.FIRST_LAYER_OK
    assert event.details["by"] == "obico"


def test_a_snapshot_url_off_the_declared_cameras_is_never_fetched(lab: PrintLab) -> None:
    with CameraPeer() as camera, CameraPeer() as intranet:
        declare_camera(lab, camera.serve("/current.jpg"))
        secret = intranet.serve("/admin/backup.png", b"\x89PNG\r\n\x1a\nsecret", "image/png")

        async def scenario(detector: MqttBus, _: MqttBus, job_id: str) -> None:
            detector.publish(topics.monitor(job_id), {**SPAGHETTI, "snapshotUrl": secret})
            await eventually(lambda: monitor_events(lab.database) == 1, within=10)

        run(lab, scenario)
        assert intranet.authorizations == []  # no request reached the other host
    event = the_event(lab)
    assert "not on a declared camera" in event.details["snapshot_unavailable"]
    # The evidence is the printer's own camera, fetched by KittyLab.
    assert event.snapshot_key is not None and event.snapshot_key.endswith(".jpg")
    assert b"secret" not in stored(lab, event.snapshot_key)


def test_a_failed_snapshot_keeps_the_detectors_report_and_never_an_error_text(
    lab: PrintLab,
) -> None:
    with CameraPeer() as camera:
        broken = camera.serve("/cam.jpg", b"<h1>login</h1> stack trace", "text/html")
        declare_camera(lab, broken)

        async def scenario(detector: MqttBus, _: MqttBus, job_id: str) -> None:
            detector.publish(topics.monitor(job_id), {**SPAGHETTI, "snapshotUrl": broken})
            await eventually(lambda: monitor_events(lab.database) == 1, within=10)

        run(lab, scenario)
    event = the_event(lab)
    assert event.snapshot_key is not None and event.snapshot_key.endswith("-report.json")
    evidence: dict[str, Any] = json.loads(stored(lab, event.snapshot_key))
    assert evidence == {
        "report": {
            "eventType": "spaghetti_detected",
            "confidence": 0.91,
            "details": {"by": "obico"},
        }
    }
    assert "not an image" in event.details["snapshot_unavailable"]


def monitor_events(database: Database) -> int:
    with database.unit_of_work() as s:
        return len(s.scalars(select(PrintMonitorEvent.id)).all())
