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
from tests.integration.seaweedfs import SeaweedFS
from tests.integration.test_print_jobs import (
    PNG,
    finish_print,
    job,
    lab,
    post_job,
    upload,
    work_queue,
)

__all__ = ["lab"]  # the fixture, shared with the print job tests


def _titles_and_bodies(database: Database, job_id: str) -> list[tuple[str, str]]:
    with database.unit_of_work() as s:
        rows = s.scalars(
            select(Notification)
            .where(Notification.related_job_id == UUID(job_id))
            .order_by(Notification.created_at, Notification.id)
        ).all()
        return [(n.payload["title"], n.payload["body"]) for n in rows]


def test_a_failure_whose_pause_is_refused_alerts_the_operator_again_urgently_with_the_reason(
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
            created = await asyncio.to_thread(post_job, client, operator, printer, key)
            await work_queue(wired, database_url)
            await bootstrap.print_tracker(wired).round()
            job_id = created["id"]
            assert job(database, job_id).status is FabricationStatus.PRINTING
            shot = await asyncio.to_thread(
                client.put,
                f"/api/fabrication/jobs/{job_id}/snapshots/cam.png",
                content=PNG,
                headers=operator.headers,
            )
            failure = await asyncio.to_thread(
                client.post,
                f"/api/fabrication/jobs/{job_id}/monitor-events",
                json={
                    "eventType": "spaghetti_detected",
                    "confidence": 0.9,
                    "snapshotKey": shot.json()["snapshotKey"],
                },
                headers=operator.headers,
            )
            assert failure.status_code == 201, failure.text
            # Before the pause reaches it, the printer has moved on: it refuses the pause.
            finish_print(fleet, printer)
            await asyncio.sleep(0.2)  # the new state reaches the driver over MQTT
            await work_queue(wired, database_url)  # the pause is sent, refused, alerted
            return {"job": job_id, "pause": failure.json()["pauseCommandId"]}

    result = asyncio.run(scenario())
    with database.unit_of_work() as s:
        pause = s.get(DeviceCommand, UUID(result["pause"]))
        assert pause is not None
        assert pause.status is CommandStatus.FAILED
        reason = pause.failure_reason
    assert reason is not None and "not printing" in reason
    told = _titles_and_bodies(database, result["job"])
    assert [title for title, _ in told] == [
        "Pausing the print on Voron: spaghetti detected",
        "URGENT: the print on Voron was NOT paused",
    ]
    first, urgent = told[0][1], told[1][1]
    assert "has not confirmed it yet" in first
    assert reason in urgent
    assert f"/api/fabrication/jobs/{result['job']}/snapshots/" in urgent


def test_the_snapshot_linked_from_an_alert_is_served_to_lab_members_only(
    client: TestClient,
    operator: Person,
    admin: Person,
    lab: dict[str, UUID],
    database: Database,
) -> None:
    key = upload(client, operator, "part.gcode")
    created = post_job(client, operator, lab["voron-24"], key)
    shot = client.put(
        f"/api/fabrication/jobs/{created['id']}/snapshots/cam.png",
        content=PNG,
        headers=operator.headers,
    )
    warning = client.post(
        f"/api/fabrication/jobs/{created['id']}/monitor-events",
        json={
            "eventType": "spaghetti_detected",
            "confidence": 0.5,
            "snapshotKey": shot.json()["snapshotKey"],
            "severity": "warning",
        },
        headers=operator.headers,
    )
    assert warning.status_code == 201, warning.text
    (_, body), *_ = _titles_and_bodies(database, created["id"])
    link = body.split("Snapshot: ", 1)[1].split()[0]
    assert link == "/api/fabrication/jobs/{}/snapshots/{}".format(
        created["id"], shot.json()["snapshotKey"].rsplit("/", 1)[1]
    )

    served = client.get(link, headers=admin.headers)
    assert served.status_code == 200, served.text
    assert served.content == PNG
    assert served.headers["content-type"] == "image/png"
    assert client.get(link).status_code == 401
    other = post_job(client, operator, lab["voron-24"], key)
    elsewhere = link.replace(created["id"], other["id"])
    assert client.get(elsewhere, headers=admin.headers).status_code == 404
    missing = link.rsplit("/", 1)[0] + "/nothing.png"
    assert client.get(missing, headers=admin.headers).status_code == 404
    escape = link.rsplit("/", 1)[0] + "/..%2F..%2Fuploads"
    assert client.get(escape, headers=admin.headers).status_code == 404


def test_a_snapshot_in_s3_is_a_redirect_to_a_presigned_url(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    seaweedfs: SeaweedFS,
) -> None:
    created = post_job(client, operator, lab["voron-24"], upload(client, operator, "p.gcode"))
    storage = StorageSettings(
        url="s3://kittylab-snapshots/lab",
        endpoint_url=seaweedfs.endpoint_url,
        access_key_id=seaweedfs.access_key_id,
        secret_access_key=seaweedfs.secret_access_key,
    )
    settings = container.settings.model_copy(update={"storage": storage})
    s3 = bootstrap.artifact_store(settings)
    s3.put_bytes(f"snapshots/{created['id']}/cam.png", PNG, content_type="image/png")
    with TestClient(
        create_app(replace(container, settings=settings, artifacts=s3)),
        raise_server_exceptions=False,
    ) as on_s3:
        answer = on_s3.get(
            f"/api/fabrication/jobs/{created['id']}/snapshots/cam.png",
            headers=operator.headers,
            follow_redirects=False,
        )
    assert answer.status_code == 307, answer.text
    fetched = httpx.get(answer.headers["location"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == PNG
