"""What the operator is told when a print monitor reports a failure: that a pause was
requested, and — when the pause then fails — an urgent second alert with the reason; the
snapshot behind the alert, served by the API."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any
from uuid import UUID

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import DeviceCommand, Notification
from kittylab.api.app import create_app
from kittylab.config import StorageSettings
from kittylab.domain.enums import CommandStatus, FabricationStatus
from tests.integration.conftest import Person
from tests.integration.live_bus import live_lab
from tests.integration.print_lab import PNG, PrintLab, finish_print
from tests.integration.seaweedfs import SeaweedFS


def _titles_and_bodies(database: Database, job_id: str) -> list[tuple[str, str]]:
    with database.unit_of_work() as s:
        rows = s.scalars(
            select(Notification)
            .where(Notification.related_job_id == UUID(job_id))
            .order_by(Notification.created_at, Notification.id)
        ).all()
        return [(n.payload["title"], n.payload["body"]) for n in rows]


def test_a_failure_whose_pause_is_refused_alerts_the_operator_again_urgently_with_the_reason(
    lab: PrintLab,
) -> None:
    printer = lab["voron-24"]
    key = lab.upload("vase.gcode")

    async def scenario() -> dict[str, Any]:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            created = await lab.start(wired, printer, key)
            job_id = created["id"]
            assert lab.job(job_id).status is FabricationStatus.PRINTING
            shot = await asyncio.to_thread(
                lab.client.put,
                f"/api/fabrication/jobs/{job_id}/snapshots/cam.png",
                content=PNG,
                headers=lab.operator.headers,
            )
            failure = await asyncio.to_thread(
                lab.client.post,
                f"/api/fabrication/jobs/{job_id}/monitor-events",
                json={
                    "eventType": "spaghetti_detected",
                    "confidence": 0.9,
                    "snapshotKey": shot.json()["snapshotKey"],
                },
                headers=lab.operator.headers,
            )
            assert failure.status_code == 201, failure.text
            # Before the pause reaches it, the printer has moved on: it refuses the pause.
            await finish_print(fleet, printer)
            await asyncio.sleep(0.2)  # the new state reaches the driver over MQTT
            await lab.work_queue(wired)  # the pause is sent, refused, alerted
            return {"job": job_id, "pause": failure.json()["pauseCommandId"]}

    result = asyncio.run(scenario())
    with lab.database.unit_of_work() as s:
        pause = s.get(DeviceCommand, UUID(result["pause"]))
        assert pause is not None
        assert pause.status is CommandStatus.FAILED
        reason = pause.failure_reason
    assert reason is not None and "not printing" in reason
    told = _titles_and_bodies(lab.database, result["job"])
    assert [title for title, _ in told] == [
        "Pausing the print on Voron: spaghetti detected",
        "URGENT: the print on Voron was NOT paused",
    ]
    first, urgent = told[0][1], told[1][1]
    assert "has not confirmed it yet" in first
    assert reason in urgent
    assert f"/api/fabrication/jobs/{result['job']}/snapshots/" in urgent


def test_the_snapshot_linked_from_an_alert_is_served_to_lab_members_only(
    admin: Person,  # before the lab: its manifest then updates them
    lab: PrintLab,
) -> None:
    key = lab.upload("part.gcode")
    created = lab.post_job(lab["voron-24"], key)
    shot = lab.client.put(
        f"/api/fabrication/jobs/{created['id']}/snapshots/cam.png",
        content=PNG,
        headers=lab.operator.headers,
    )
    warning = lab.client.post(
        f"/api/fabrication/jobs/{created['id']}/monitor-events",
        json={
            "eventType": "spaghetti_detected",
            "confidence": 0.5,
            "snapshotKey": shot.json()["snapshotKey"],
            "severity": "warning",
        },
        headers=lab.operator.headers,
    )
    assert warning.status_code == 201, warning.text
    (_, body), *_ = _titles_and_bodies(lab.database, created["id"])
    link = body.split("Snapshot: ", 1)[1].split()[0]
    assert link == "/api/fabrication/jobs/{}/snapshots/{}".format(
        created["id"], shot.json()["snapshotKey"].rsplit("/", 1)[1]
    )

    served = lab.client.get(link, headers=admin.headers)
    assert served.status_code == 200, served.text
    assert served.content == PNG
    assert served.headers["content-type"] == "image/png"
    assert lab.client.get(link).status_code == 401
    other = lab.post_job(lab["voron-24"], key)
    elsewhere = link.replace(created["id"], other["id"])
    assert lab.client.get(elsewhere, headers=admin.headers).status_code == 404
    missing = link.rsplit("/", 1)[0] + "/nothing.png"
    assert lab.client.get(missing, headers=admin.headers).status_code == 404
    escape = link.rsplit("/", 1)[0] + "/..%2F..%2Fuploads"
    assert lab.client.get(escape, headers=admin.headers).status_code == 404


def test_a_snapshot_in_s3_is_a_redirect_to_a_presigned_url(
    lab: PrintLab,
    seaweedfs: SeaweedFS,
) -> None:
    created = lab.post_job(lab["voron-24"], lab.upload("p.gcode"))
    storage = StorageSettings(
        url="s3://kittylab-snapshots/lab",
        endpoint_url=seaweedfs.endpoint_url,
        access_key_id=seaweedfs.access_key_id,
        secret_access_key=seaweedfs.secret_access_key,
    )
    settings = lab.container.settings.model_copy(update={"storage": storage})
    s3 = bootstrap.artifact_store(settings)
    s3.put_bytes(f"snapshots/{created['id']}/cam.png", PNG, content_type="image/png")
    with TestClient(
        create_app(replace(lab.container, settings=settings, artifacts=s3)),
        raise_server_exceptions=False,
        client=("127.0.0.1", 50000),
    ) as on_s3:
        answer = on_s3.get(
            f"/api/fabrication/jobs/{created['id']}/snapshots/cam.png",
            headers=lab.operator.headers,
            follow_redirects=False,
        )
    assert answer.status_code == 307, answer.text
    fetched = httpx.get(answer.headers["location"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == PNG
