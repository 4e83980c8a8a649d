"""Print jobs from file to finished part on the simulated lab, through the real pieces:
the API, procrastinate workers, the embedded MQTT broker, the print tracker."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
import trimesh
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    Device,
    DeviceCommand,
    FabricationJob,
    Notification,
    PrintMonitorEvent,
)
from kittylab.devices import telemetry
from kittylab.domain.enums import CommandStatus, FabricationStatus, OnlineState
from tests.integration.conftest import Person, _person
from tests.integration.live_bus import live_lab
from tests.integration.print_lab import GCODE, PNG, PrintLab, finish_print


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
    lab: PrintLab,
) -> None:
    neither = lab.client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"])},
        headers=lab.operator.headers,
    )
    assert (neither.status_code, neither.json()["field"]) == (422, "fileKey")
    unknown = lab.client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"]), "fileKey": "uploads/x/none.gcode"},
        headers=lab.operator.headers,
    )
    assert (unknown.status_code, unknown.json()["field"]) == (422, "fileKey")
    key = lab.upload("part.gcode")
    lights = lab.client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["farm-lights"]), "fileKey": key},
        headers=lab.operator.headers,
    )
    assert (lights.status_code, lights.json()["field"]) == (422, "deviceId")
    profile = lab.client.post(
        "/api/fabrication/jobs",
        json={"deviceId": str(lab["prusa-mk4"]), "fileKey": key, "profile": "disco"},
        headers=lab.operator.headers,
    )
    assert (profile.status_code, profile.json()["field"]) == (422, "profile")


def test_a_gcode_job_prints_to_completion_then_waits_for_a_clear_bed(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    first_key = lab.upload("bracket.gcode")
    second_key = lab.upload("hook.gcode")

    async def scenario() -> None:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            tracker = bootstrap.print_tracker(wired)
            first = await asyncio.to_thread(lab.post_job, printer, first_key)
            second = await asyncio.to_thread(lab.post_job, printer, second_key)
            assert first["status"] == "preparing"
            assert first["details"]["stage"] == "slicing"

            await lab.work_queue(wired)  # prepare both, start the first
            assert lab.job(first["id"]).details["stage"] == "starting"
            assert lab.job(second["id"]).details["stage"] == "queued"

            await tracker.round()  # the printer took it: printing, the scene runs
            assert lab.job(first["id"]).status is FabricationStatus.PRINTING
            await lab.work_queue(wired)  # dispatch the scene's commands
            lights = fleet.devices[lab["farm-lights"]]
            assert lights.snapshot()["on"] is True

            await finish_print(fleet, printer)
            for _ in range(100):  # the completed state travels over MQTT to the driver
                if await tracker.round():
                    break
                await asyncio.sleep(0.05)
            done = lab.job(first["id"])
            assert done.status is FabricationStatus.COMPLETED
            assert done.completed_at is not None
            await lab.work_queue(wired)  # the queue looks: the bed is not clear
            assert lab.job(second["id"]).details["stage"] == "queued"

            cleared = await asyncio.to_thread(
                lab.client.post,
                f"/api/fabrication/printers/{printer}/bed-clear",
                headers=lab.operator.headers,
            )
            assert cleared.json() == {"deviceId": str(printer), "jobsCleared": 1}
            await lab.work_queue(wired)
            assert lab.job(second["id"]).details["stage"] == "starting"
            await tracker.round()
            assert lab.job(second["id"]).status is FabricationStatus.PRINTING

    asyncio.run(scenario())
    with lab.database.unit_of_work() as s:
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


def test_a_failure_report_pauses_the_print_and_a_warning_only_notifies(
    lab: PrintLab,
) -> None:
    printer = lab["voron-24"]
    key = lab.upload("vase.gcode")

    async def scenario() -> dict[str, Any]:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            tracker = bootstrap.print_tracker(wired)
            created = await asyncio.to_thread(lab.post_job, printer, key)
            await lab.work_queue(wired)
            await tracker.round()
            job_id = created["id"]
            assert lab.job(job_id).status is FabricationStatus.PRINTING

            def monitor(body: dict[str, Any]) -> Any:
                return lab.client.post(
                    f"/api/fabrication/jobs/{job_id}/monitor-events",
                    json=body,
                    headers=lab.operator.headers,
                )

            no_snapshot = await asyncio.to_thread(
                monitor, {"eventType": "spaghetti_detected", "confidence": 0.9}
            )
            assert (no_snapshot.status_code, no_snapshot.json()["field"]) == (422, "snapshotKey")
            shot = await asyncio.to_thread(
                lab.client.put,
                f"/api/fabrication/jobs/{job_id}/snapshots/cam.png",
                content=PNG,
                headers=lab.operator.headers,
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
            await lab.work_queue(wired)
            assert fleet.devices[printer].snapshot()["state"] == "paused"
            await tracker.round()
            assert lab.job(job_id).status is FabricationStatus.PAUSED
            again = await asyncio.to_thread(
                monitor,
                {"eventType": "nozzle_clog", "confidence": 0.8, "snapshotKey": snapshot},
            )
            return {"job": job_id, "again": again.json()}

    result = asyncio.run(scenario())
    assert result["again"]["note"] == "the job is paused"
    with lab.database.unit_of_work() as s:
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
    lab: PrintLab,
) -> None:
    cube = trimesh.creation.box(extents=(20, 20, 20)).export(file_type="stl")
    tower = trimesh.creation.box(extents=(20, 20, 400)).export(file_type="stl")
    fits = lab.post_job(lab["prusa-mk4"], lab.upload("cube.stl", cube))
    too_tall = lab.post_job(lab["voron-24"], lab.upload("tower.stl", tower))

    asyncio.run(lab.work_queue())  # slicing only: no bus, no printer

    sliced = lab.job(fits["id"])
    assert sliced.details["stage"] == "queued", sliced.details
    assert sliced.details["estimated_seconds"] > 0
    assert sliced.details["filament_g"] > 0
    assert sliced.details["slicing"]["profile"]["printer"] == "generic-220"
    assert sliced.gcode_path.endswith("/cube.gcode")
    assert lab.container.artifacts is not None
    gcode = b"".join(lab.container.artifacts.read_chunks(sliced.gcode_path))
    assert b"G1" in gcode
    refused = lab.job(too_tall["id"])
    assert refused.status is FabricationStatus.FAILED
    assert "slicing failed" in refused.details["reason"]
    assert "400" in refused.details["reason"]


def test_a_cad_artifact_becomes_a_sliced_print_job_and_appears_in_its_lineage(
    lab: PrintLab,
) -> None:
    stl_id, created = lab.post_cad_job(lab["prusa-mk4"])
    asyncio.run(lab.work_queue())
    sliced = lab.job(created["id"])
    assert sliced.details["stage"] == "queued", sliced.details
    assert sliced.cad_artifact_id == stl_id
    assert sliced.details["slicing"]["modelSizeMm"][:2] == [40.0, 30.0]
    lineage = lab.client.get(f"/api/cad/artifacts/{stl_id}/lineage", headers=lab.operator.headers)
    assert lineage.status_code == 200, lineage.text
    assert created["id"] in lineage.text


# --- the owner of a print job, and no one else without an operating role (issue 13, hole 5) --


def _printing(lab: PrintLab, printer: UUID, owner: UUID) -> UUID:
    """A job of ``owner`` printing on ``printer``, the printer online and saying so."""
    with lab.database.unit_of_work() as s:
        s.execute(update(Device).values(online_state=OnlineState.ONLINE))
        printing = telemetry.IncomingEvent(printer, None, "state", {"state": "printing"}, None)
        telemetry.store_batch(s, [printing], lab.container.clock())
        job = FabricationJob(
            device_id=printer,
            gcode_path="prints/part.gcode",
            status=FabricationStatus.PRINTING,
            details={"stage": "printing"},
            requested_by=owner,
        )
        s.add(job)
        s.flush()
        return job.id


def _commands_by(lab: PrintLab, who: UUID) -> list[tuple[str, UUID]]:
    with lab.database.unit_of_work() as s:
        rows = s.scalars(select(DeviceCommand).where(DeviceCommand.requested_by == who)).all()
        return [(c.intent, c.device_id) for c in rows]


@pytest.fixture
def engineer(database: Database) -> Person:
    return _person(database, "erin", ["engineer"])


def test_an_engineer_cancels_her_own_print_job_but_not_anothers(
    engineer: Person, lab: PrintLab
) -> None:
    own = _printing(lab, lab["prusa-mk4"], engineer.user_id)
    other = _printing(lab, lab["voron-24"], lab.operator.user_id)

    refused = lab.client.post(f"/api/fabrication/jobs/{other}/cancel", headers=engineer.headers)
    assert refused.status_code == 403, refused.text
    assert lab.job(str(other)).status is FabricationStatus.PRINTING

    cancelled = lab.client.post(f"/api/fabrication/jobs/{own}/cancel", headers=engineer.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert _commands_by(lab, engineer.user_id) == [("print_cancel", lab["prusa-mk4"])]


def test_an_engineer_pauses_her_own_print_by_voice_but_not_anothers(
    engineer: Person, lab: PrintLab
) -> None:
    _printing(lab, lab["prusa-mk4"], engineer.user_id)
    _printing(lab, lab["voron-24"], lab.operator.user_id)

    def ask(text: str) -> dict[str, Any]:
        body = {"channel": "cli", "input": {"text": text}}
        r = lab.client.post("/api/query", json=body, headers=engineer.headers)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    refused = ask("pause the voron")
    assert refused["routing"]["outcome"] == "refused", refused
    assert "engineer" in refused["replies"][0]["text"]
    assert ask("pause the prusa")["routing"]["outcome"] == "command_recorded"
    assert _commands_by(lab, engineer.user_id) == [("print_pause", lab["prusa-mk4"])]
