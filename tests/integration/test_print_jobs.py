"""Print jobs from file to finished part on the simulated lab, through the real pieces:
the API, procrastinate workers, the embedded MQTT broker, the print tracker."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import trimesh
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    Device,
    DeviceCommand,
    FabricationJob,
    Notification,
    PrintMonitorEvent,
)
from kittylab.adapters.jobs import build_job_app, run_worker
from kittylab.config import CommandSettings
from kittylab.domain.enums import ArtifactType, CommandStatus, FabricationStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.services.cad import GenerateRequest, PolicyMode
from kittylab.services.simulation import SimulatedFleet
from tests.integration.conftest import Person
from tests.integration.live_bus import live_lab

GCODE = b"; a tiny job\nG28\nG1 X10 Y10\n" + b"G1 X20 Y20\n" * 50


@pytest.fixture
def lab(container: bootstrap.Container, database: Database, demo_lab_path: Path) -> dict[str, UUID]:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
    with database.unit_of_work() as s:
        return {d.external_id: d.id for d in s.scalars(select(Device))}


def test_upload_refuses_files_a_printer_cannot_use(client: TestClient, operator: Person) -> None:
    bad = client.put("/api/fabrication/files/notes.pdf", content=b"x", headers=operator.headers)
    assert bad.status_code == 422
    assert bad.json()["field"] == "filename"
    empty = client.put("/api/fabrication/files/a.gcode", content=b"", headers=operator.headers)
    assert empty.status_code == 422
    assert empty.json()["field"] == "body"
    anonymous = client.put("/api/fabrication/files/a.gcode", content=GCODE)
    assert anonymous.status_code == 401


def test_an_upload_over_the_limit_is_413_and_nothing_is_kept(
    container: bootstrap.Container, client: TestClient, operator: Person
) -> None:
    container.settings.fabrication.max_upload_bytes = 2048
    answer = client.put(
        "/api/fabrication/files/big.gcode", content=b"G1\n" * 2000, headers=operator.headers
    )
    assert answer.status_code == 413
    assert container.artifacts is not None
    assert not list((container.settings.data_dir / "artifacts").rglob("big.gcode"))


def test_a_job_needs_exactly_one_source_and_a_printer(
    client: TestClient, operator: Person, lab: dict[str, UUID]
) -> None:
    neither = client.post(
        "/api/fabrication/jobs", json={"deviceId": str(lab["prusa-mk4"])}, headers=operator.headers
    )
    assert (neither.status_code, neither.json()["field"]) == (422, "fileKey")
    unknown = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"]), "fileKey": "uploads/x/none.gcode"},
        headers=operator.headers,
    )
    assert (unknown.status_code, unknown.json()["field"]) == (422, "fileKey")
    key = upload(client, operator, "part.gcode")
    lights = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["farm-lights"]), "fileKey": key},
        headers=operator.headers,
    )
    assert (lights.status_code, lights.json()["field"]) == (422, "deviceId")
    profile = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"]), "fileKey": key, "profile": "disco"},
        headers=operator.headers,
    )
    assert (profile.status_code, profile.json()["field"]) == (422, "profile")


def upload(client: TestClient, who: Person, name: str, content: bytes = GCODE) -> str:
    answer = client.put(f"/api/fabrication/files/{name}", content=content, headers=who.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["size"] == len(content)
    key: str = answer.json()["fileKey"]
    return key


def test_a_gcode_job_prints_to_completion_then_waits_for_a_clear_bed(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    printer = lab["prusa-mk4"]
    first_key = upload(client, operator, "bracket.gcode")
    second_key = upload(client, operator, "hook.gcode")

    async def scenario() -> None:
        async with live_lab(container) as (_bus, fleet, wired):
            tracker = bootstrap.print_tracker(wired)
            first = await asyncio.to_thread(post_job, client, operator, printer, first_key)
            second = await asyncio.to_thread(post_job, client, operator, printer, second_key)
            assert first["status"] == "preparing"
            assert first["details"]["stage"] == "slicing"

            await work_queue(wired, database_url)  # prepare both, start the first
            assert job(database, first["id"]).details["stage"] == "starting"
            assert job(database, second["id"]).details["stage"] == "queued"

            await tracker.round()  # the printer took it: printing, the scene runs
            assert job(database, first["id"]).status is FabricationStatus.PRINTING
            await work_queue(wired, database_url)  # dispatch the scene's commands
            lights = fleet.devices[lab["farm-lights"]]
            assert lights.snapshot()["on"] is True

            finish_print(fleet, printer)
            for _ in range(100):  # the completed state travels over MQTT to the driver
                if await tracker.round():
                    break
                await asyncio.sleep(0.05)
            done = job(database, first["id"])
            assert done.status is FabricationStatus.COMPLETED
            assert done.completed_at is not None
            await work_queue(wired, database_url)  # the queue looks: the bed is not clear
            assert job(database, second["id"]).details["stage"] == "queued"

            cleared = await asyncio.to_thread(
                client.post,
                f"/api/fabrication/printers/{printer}/bed-clear",
                headers=operator.headers,
            )
            assert cleared.json() == {"deviceId": str(printer), "jobsCleared": 1}
            await work_queue(wired, database_url)
            assert job(database, second["id"]).details["stage"] == "starting"
            await tracker.round()
            assert job(database, second["id"]).status is FabricationStatus.PRINTING

    asyncio.run(scenario())
    with database.unit_of_work() as s:
        start = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "print_start")).all()
        assert [c.status for c in start] == [CommandStatus.ACKED, CommandStatus.ACKED]
        assert [c.payload["file"] for c in start] == ["bracket.gcode", "hook.gcode"]
        first_job = s.scalars(
            select(FabricationJob).where(FabricationJob.origin_command_id == start[0].id)
        ).one()
        told = s.scalars(
            select(Notification).where(Notification.related_job_id == first_job.id)
        ).all()
        assert len(told) == 1
        assert "Clear the bed" in told[0].payload["body"]
        events = s.scalars(
            select(PrintMonitorEvent).where(PrintMonitorEvent.fabrication_job_id == first_job.id)
        ).all()
        assert [(e.event_type.value, e.confidence) for e in events] == [("completed", 1.0)]


def post_job(client: TestClient, who: Person, device: UUID, key: str) -> dict[str, Any]:
    answer = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(device), "fileKey": key},
        headers=who.headers,
    )
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


def job(database: Database, job_id: str) -> FabricationJob:
    with database.unit_of_work() as s:
        row = s.get(FabricationJob, UUID(job_id))
        assert row is not None
        s.expunge(row)
        return row


async def work_queue(container: bootstrap.Container, database_url: str) -> None:
    """Run a worker until the queue is empty, with fast command confirmation."""
    settings = container.settings.model_copy(
        update={"commands": CommandSettings(ack_timeout_seconds=3, poll_interval_seconds=0.05)}
    )
    context = bootstrap.job_context(replace(container, settings=settings))
    app = build_job_app(database_url)
    async with app.open_async():
        await run_worker(app, context, concurrency=1, wait=False)


def finish_print(fleet: SimulatedFleet, printer: UUID) -> None:
    simulator = fleet.devices[printer]
    for _ in range(40):
        simulator.tick(60)
    assert simulator.snapshot()["state"] == "completed"
    fleet.report()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_a_failure_report_pauses_the_print_and_a_warning_only_notifies(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    printer = lab["voron-24"]
    key = upload(client, operator, "vase.gcode")

    async def scenario() -> dict[str, Any]:
        async with live_lab(container) as (_bus, fleet, wired):
            tracker = bootstrap.print_tracker(wired)
            created = await asyncio.to_thread(post_job, client, operator, printer, key)
            await work_queue(wired, database_url)
            await tracker.round()
            job_id = created["id"]
            assert job(database, job_id).status is FabricationStatus.PRINTING

            def monitor(body: dict[str, Any]) -> Any:
                return client.post(
                    f"/api/fabrication/jobs/{job_id}/monitor-events",
                    json=body,
                    headers=operator.headers,
                )

            no_snapshot = await asyncio.to_thread(
                monitor, {"eventType": "spaghetti_detected", "confidence": 0.9}
            )
            assert (no_snapshot.status_code, no_snapshot.json()["field"]) == (422, "snapshotKey")
            shot = await asyncio.to_thread(
                client.put,
                f"/api/fabrication/jobs/{job_id}/snapshots/cam.png",
                content=PNG,
                headers=operator.headers,
            )
            assert shot.status_code == 201, shot.text
            snapshot = shot.json()["snapshotKey"]
            warning = await asyncio.to_thread(
                monitor,
                {
                    "eventType": "spaghetti_detected",
                    "confidence": 0.5,
                    "snapshotKey": snapshot,
                    "severity": "warning",
                },
            )
            assert warning.json()["pauseCommandId"] is None
            assert warning.json()["notified"] == 1
            failure = await asyncio.to_thread(
                monitor,
                {"eventType": "spaghetti_detected", "confidence": 0.93, "snapshotKey": snapshot},
            )
            assert failure.status_code == 201, failure.text
            assert failure.json()["pauseCommandId"] is not None
            await work_queue(wired, database_url)
            assert fleet.devices[printer].snapshot()["state"] == "paused"
            await tracker.round()
            assert job(database, job_id).status is FabricationStatus.PAUSED
            again = await asyncio.to_thread(
                monitor,
                {"eventType": "nozzle_clog", "confidence": 0.8, "snapshotKey": snapshot},
            )
            return {"job": job_id, "again": again.json()}

    result = asyncio.run(scenario())
    assert result["again"]["note"] == "the job is paused"
    with database.unit_of_work() as s:
        told = s.scalars(
            select(Notification)
            .where(Notification.related_job_id == UUID(result["job"]))
            .order_by(Notification.id)
        ).all()
        titles = [n.payload["title"] for n in told]
    assert titles == [
        "Print on Voron: spaghetti detected (warning)",
        "Pausing the print on Voron: spaghetti detected",
        "Print on Voron: nozzle clog (failure)",
    ]
    assert "snapshots/" in told[1].payload["body"]


def test_a_model_is_sliced_with_estimates_and_an_oversized_one_fails_with_the_reason(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    cube = trimesh.creation.box(extents=(20, 20, 20)).export(file_type="stl")
    tower = trimesh.creation.box(extents=(20, 20, 400)).export(file_type="stl")
    fits = post_job(client, operator, lab["prusa-mk4"], upload(client, operator, "cube.stl", cube))
    too_tall = post_job(
        client, operator, lab["voron-24"], upload(client, operator, "tower.stl", tower)
    )

    asyncio.run(work_queue(container, database_url))  # slicing only: no bus, no printer

    sliced = job(database, fits["id"])
    assert sliced.details["stage"] == "queued", sliced.details
    assert sliced.details["estimated_seconds"] > 0
    assert sliced.details["filament_g"] > 0
    assert sliced.details["slicing"]["profile"]["printer"] == "generic-220"
    assert sliced.gcode_path.endswith("/cube.gcode")
    assert container.artifacts is not None
    gcode = b"".join(container.artifacts.read_chunks(sliced.gcode_path))
    assert b"G1" in gcode
    refused = job(database, too_tall["id"])
    assert refused.status is FabricationStatus.FAILED
    assert "slicing failed" in refused.details["reason"]
    assert "400" in refused.details["reason"]


def test_a_cad_artifact_becomes_a_sliced_print_job_and_appears_in_its_lineage(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    result = container.cad.generate(
        GenerateRequest(
            prompt="a 40 by 30 plate, 5 mm thick",
            policy_mode=PolicyMode.OFFLINE,
            requested_by=operator.user_id,
        )
    )
    stl = next(a for a in result.artifacts if a.artifact_type is ArtifactType.STL)
    answer = client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"]), "cadArtifactId": str(stl.id)},
        headers=operator.headers,
    )
    assert answer.status_code == 202, answer.text
    asyncio.run(work_queue(container, database_url))
    sliced = job(database, answer.json()["id"])
    assert sliced.details["stage"] == "queued", sliced.details
    assert sliced.cad_artifact_id == stl.id
    assert sliced.details["slicing"]["modelSizeMm"][:2] == [40.0, 30.0]
    lineage = client.get(f"/api/cad/artifacts/{stl.id}/lineage", headers=operator.headers)
    assert lineage.status_code == 200, lineage.text
    assert answer.json()["id"] in lineage.text
