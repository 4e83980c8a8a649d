"""Print jobs when things go wrong, on the simulated lab through the real pieces (API,
workers, the embedded MQTT broker, the tracker): a printer that goes away mid-job, a
cancel that cannot reach the printer, a crash at the wrong moment, a retried request."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import DeviceCommand, Notification
from kittylab.domain.enums import FabricationStatus
from kittylab.services import maintenance
from tests.integration.conftest import Person
from tests.integration.live_bus import live_lab
from tests.integration.test_print_jobs import (
    finish_print,
    job,
    lab,
    post_job,
    upload,
    work_queue,
)

__all__ = ["lab"]  # the fixture, shared with the print job tests


class SteppedClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _lost_after(container: bootstrap.Container, seconds: float) -> bootstrap.Container:
    fabrication = container.settings.fabrication.model_copy(
        update={"printer_lost_after_seconds": seconds}
    )
    return replace(
        container, settings=container.settings.model_copy(update={"fabrication": fabrication})
    )


def _all_silent_devices_offline(database: Database, now: datetime) -> None:
    """The minutely offline task, run as if the lab had been silent for ten minutes."""
    with database.unit_of_work() as s:
        assert maintenance.mark_silent_devices_offline(
            s, now + timedelta(minutes=10), timedelta(minutes=2)
        )


def test_a_job_whose_printer_goes_offline_fails_after_the_setting_and_the_queue_moves_on(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    printer = lab["prusa-mk4"]
    first_key = upload(client, operator, "lost.gcode")
    second_key = upload(client, operator, "next.gcode")

    async def scenario() -> tuple[str, str]:
        async with live_lab(container) as (_bus, fleet, wired):
            clock = SteppedClock(container.clock())
            tracker = bootstrap.print_tracker(replace(_lost_after(wired, 60), clock=clock))
            first = await asyncio.to_thread(post_job, client, operator, printer, first_key)
            await work_queue(wired, database_url)
            await tracker.round()
            assert job(database, first["id"]).status is FabricationStatus.PRINTING

            # The printer stops reporting and goes offline: its driver still holds the last
            # state it published ("printing"), which is no news about the print.
            _all_silent_devices_offline(database, clock())
            await tracker.round()
            noted = job(database, first["id"])
            assert noted.status is FabricationStatus.PRINTING  # a blip is not a failure
            assert "printer_unreadable_since" in noted.details
            clock.now += timedelta(seconds=59)
            await tracker.round()
            assert job(database, first["id"]).status is FabricationStatus.PRINTING
            clock.now += timedelta(seconds=2)
            await tracker.round()
            assert job(database, first["id"]).status is FabricationStatus.FAILED

            # Nothing left to cancel; the bed can be confirmed and the queue moves on once
            # the printer is back (here: it finished the lost part meanwhile).
            late = await asyncio.to_thread(
                client.post, f"/api/fabrication/jobs/{first['id']}/cancel", headers=operator.headers
            )
            assert late.status_code == 409, late.text
            cleared = await asyncio.to_thread(
                client.post,
                f"/api/fabrication/printers/{printer}/bed-clear",
                headers=operator.headers,
            )
            assert cleared.status_code == 200, cleared.text
            finish_print(fleet, printer)  # reports again: online
            second = await asyncio.to_thread(post_job, client, operator, printer, second_key)
            await work_queue(wired, database_url)
            await tracker.round()
            assert job(database, second["id"]).status is FabricationStatus.PRINTING
            return first["id"], second["id"]

    first_id, _ = asyncio.run(scenario())
    failed = job(database, first_id)
    reason = failed.details["reason"]
    assert "lost contact with the printer: it could not be read for 61 s" in reason
    assert "the printer is offline" in reason
    with database.unit_of_work() as s:
        told = s.scalars(
            select(Notification).where(Notification.related_job_id == UUID(first_id))
        ).all()
        assert [n.payload["title"] for n in told] == ["Print failed on Prusa"]
        assert "lost contact" in told[0].payload["body"]
        assert "Clear the bed" in told[0].payload["body"]


def test_cancelling_a_job_on_an_offline_printer_aborts_it_without_sending_anything(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    lab: dict[str, UUID],
    database: Database,
    database_url: str,
) -> None:
    printer = lab["prusa-mk4"]
    key = upload(client, operator, "stuck.gcode")

    async def scenario() -> str:
        async with live_lab(container) as (_bus, _fleet, wired):
            created = await asyncio.to_thread(post_job, client, operator, printer, key)
            await work_queue(wired, database_url)
            await bootstrap.print_tracker(wired).round()
            assert job(database, created["id"]).status is FabricationStatus.PRINTING
            return str(created["id"])

    job_id = asyncio.run(scenario())
    _all_silent_devices_offline(database, container.clock())
    cancelled = client.post(f"/api/fabrication/jobs/{job_id}/cancel", headers=operator.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "aborted"
    assert "was offline: nothing was sent" in cancelled.json()["details"]["reason"]
    with database.unit_of_work() as s:
        intents = [c.intent for c in s.scalars(select(DeviceCommand))]
    assert "print_cancel" not in intents
    cleared = client.post(
        f"/api/fabrication/printers/{printer}/bed-clear", headers=operator.headers
    )
    assert cleared.json() == {"deviceId": str(printer), "jobsCleared": 1}
