"""What the operator is told when a print monitor reports a failure: that a pause was
requested, and — when the pause then fails — an urgent second alert with the reason; the
snapshot behind the alert, served by the API."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import DeviceCommand, Notification
from kittylab.domain.enums import CommandStatus, FabricationStatus
from tests.integration.conftest import Person
from tests.integration.live_bus import live_lab
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
