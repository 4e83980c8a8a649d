"""Print jobs when things go wrong, on the simulated lab through the real pieces (API,
workers, the embedded MQTT broker, the tracker): a printer that goes away mid-job, a
cancel that cannot reach the printer, a crash at the wrong moment, a retried request."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    DeviceCommand,
    FabricationJob,
    Notification,
    PrintMonitorEvent,
)
from kittylab.adapters.jobs.queue import JobQueueUnavailable
from kittylab.devices import dispatch, maintenance
from kittylab.domain.enums import CommandStatus, FabricationStatus, MonitorEventType
from kittylab.fabrication import jobs as fabrication
from kittylab.fabrication import records as fabrication_records
from kittylab.worker.run import build_job_app, run_worker
from kittylab.worker.tasks import PRINT_QUEUES_TASK
from tests.integration.conftest import Person
from tests.integration.live_bus import (
    embedded_broker,
    eventually,
    free_port,
    lab_fleet,
    live_lab,
    running_bus,
)
from tests.integration.print_lab import PNG, PrintLab, SteppedClock, detached, finish_print


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
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    first_key = lab.upload("lost.gcode")
    second_key = lab.upload("next.gcode")

    async def scenario() -> tuple[str, str]:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            clock = SteppedClock(lab.container.clock())
            tracker = bootstrap.print_tracker(replace(_lost_after(wired, 60), clock=clock))
            first = await asyncio.to_thread(lab.post_job, printer, first_key)
            await lab.work_queue(wired)
            await tracker.round()
            assert lab.job(first["id"]).status is FabricationStatus.PRINTING

            # The printer stops reporting and goes offline: its driver still holds the last
            # state it published ("printing"), which is no news about the print.
            await asyncio.to_thread(fleet.settle)  # no report still on its way
            _all_silent_devices_offline(lab.database, clock())
            await tracker.round()
            noted = lab.job(first["id"])
            assert noted.status is FabricationStatus.PRINTING  # a blip is not a failure
            assert "printer_unreadable_since" in noted.details
            clock.now += timedelta(seconds=59)
            await tracker.round()
            assert lab.job(first["id"]).status is FabricationStatus.PRINTING
            clock.now += timedelta(seconds=2)
            await tracker.round()
            assert lab.job(first["id"]).status is FabricationStatus.FAILED

            # Nothing left to cancel; the bed can be confirmed and the queue moves on once
            # the printer is back (here: it finished the lost part meanwhile).
            late = await asyncio.to_thread(
                lab.client.post,
                f"/api/fabrication/jobs/{first['id']}/cancel",
                headers=lab.operator.headers,
            )
            assert late.status_code == 409, late.text
            cleared = await asyncio.to_thread(
                lab.client.post,
                f"/api/fabrication/printers/{printer}/bed-clear",
                headers=lab.operator.headers,
            )
            assert cleared.status_code == 200, cleared.text
            await finish_print(fleet, printer)  # reports again: online
            second = await asyncio.to_thread(lab.post_job, printer, second_key)
            await lab.work_queue(wired)
            await tracker.round()
            assert lab.job(second["id"]).status is FabricationStatus.PRINTING
            return first["id"], second["id"]

    first_id, _ = asyncio.run(scenario())
    failed = lab.job(first_id)
    reason = failed.details["reason"]
    assert "lost contact with the printer: it could not be read for 61 s" in reason
    assert "the printer is offline" in reason
    with lab.database.unit_of_work() as s:
        told = s.scalars(
            select(Notification).where(Notification.related_job_id == UUID(first_id))
        ).all()
        assert [n.payload["title"] for n in told] == ["Print failed on Prusa"]
        assert "lost contact" in told[0].payload["body"]
        assert "Clear the bed" in told[0].payload["body"]


def test_cancelling_a_job_on_an_offline_printer_aborts_it_without_sending_anything(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("stuck.gcode")

    async def scenario() -> str:
        async with live_lab(lab.container) as (_bus, _fleet, wired):
            created = await lab.start(wired, printer, key)
            assert lab.job(created["id"]).status is FabricationStatus.PRINTING
            return str(created["id"])

    job_id = asyncio.run(scenario())
    _all_silent_devices_offline(lab.database, lab.container.clock())
    cancelled = lab.client.post(
        f"/api/fabrication/jobs/{job_id}/cancel", headers=lab.operator.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "aborted"
    assert "was offline: nothing was sent" in cancelled.json()["details"]["reason"]
    with lab.database.unit_of_work() as s:
        intents = [c.intent for c in s.scalars(select(DeviceCommand))]
    assert "print_cancel" not in intents
    cleared = lab.client.post(
        f"/api/fabrication/printers/{printer}/bed-clear", headers=lab.operator.headers
    )
    assert cleared.json() == {"deviceId": str(printer), "jobsCleared": 1}


class Crash(RuntimeError):
    """The process dying at this point, as far as the transaction is concerned."""


def _crash_once(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Make ``module.name`` raise the first time it is called; returns the call count."""
    real = getattr(module, name)
    calls: list[int] = []

    def crashing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise Crash(f"crashed in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, crashing)
    return calls


def test_a_crash_while_recording_a_finished_job_loses_neither_the_status_nor_its_notice(
    lab: PrintLab,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("done.gcode")

    async def scenario() -> str:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            tracker = bootstrap.print_tracker(wired)
            created = await asyncio.to_thread(lab.post_job, printer, key)
            await lab.work_queue(wired)
            await tracker.round()
            job_id = str(created["id"])
            assert lab.job(job_id).status is FabricationStatus.PRINTING
            await finish_print(fleet, printer)
            await asyncio.sleep(0.2)  # the completed state reaches the driver over MQTT

            calls = _crash_once(monkeypatch, fabrication_records, "record_monitor_event")
            with pytest.raises(Crash):
                await tracker.round()
            assert calls == [1]
            # All or nothing: the job is not completed without its event and notice.
            assert lab.job(job_id).status is FabricationStatus.PRINTING
            assert _notices(lab.database, job_id) == []

            assert await tracker.round() == 1  # the next round (or the next process)
            assert lab.job(job_id).status is FabricationStatus.COMPLETED
            assert await tracker.round() == 0
            return job_id

    job_id = asyncio.run(scenario())
    assert _notices(lab.database, job_id) == ["Print completed on Prusa"]
    with lab.database.unit_of_work() as s:
        events = s.scalars(
            select(PrintMonitorEvent).where(PrintMonitorEvent.fabrication_job_id == UUID(job_id))
        ).all()
        assert [e.event_type for e in events] == [MonitorEventType.COMPLETED]


def test_a_crash_while_starting_a_scene_leaves_the_job_to_start_again_with_its_scene(
    lab: PrintLab,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("lit.gcode")

    async def scenario() -> None:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            tracker = bootstrap.print_tracker(wired)
            created = await asyncio.to_thread(lab.post_job, printer, key)
            await lab.work_queue(wired)  # started: the printer heats
            job_id = str(created["id"])
            _crash_once(monkeypatch, dispatch, "submit")
            with pytest.raises(Crash):
                await tracker.round()
            assert lab.job(job_id).status is FabricationStatus.PREPARING
            assert await tracker.round() == 1
            assert lab.job(job_id).status is FabricationStatus.PRINTING
            await lab.work_queue(wired)  # the scene's commands
            assert fleet.devices[lab["farm-lights"]].snapshot()["on"] is True

    asyncio.run(scenario())
    with lab.database.unit_of_work() as s:
        scene = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "light_on")).all()
    assert len(scene) == 1


def _notices(database: Database, job_id: str) -> list[str]:
    with database.unit_of_work() as s:
        rows = s.scalars(select(Notification).where(Notification.related_job_id == UUID(job_id)))
        return [n.payload["title"] for n in rows]


def test_a_retried_job_request_with_the_same_idempotency_key_returns_the_first_job(
    admin: Person,  # before the lab: its manifest then updates them
    lab: PrintLab,
) -> None:
    key = lab.upload("once.gcode")
    body = {"deviceId": str(lab["prusa-mk4"]), "fileKey": key, "idempotencyKey": "req-42"}
    first = lab.client.post("/api/fabrication/jobs", json=body, headers=lab.operator.headers)
    again = lab.client.post("/api/fabrication/jobs", json=body, headers=lab.operator.headers)
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert again.json()["id"] == first.json()["id"]

    other_file = {**body, "fileKey": lab.upload("twice.gcode")}
    misused = lab.client.post(
        "/api/fabrication/jobs", json=other_file, headers=lab.operator.headers
    )
    assert (misused.status_code, misused.json()["field"]) == (409, "idempotencyKey")
    # Keys belong to whoever sent them: another person's "req-42" is another request.
    theirs = lab.client.post("/api/fabrication/jobs", json=body, headers=admin.headers)
    assert theirs.status_code == 202
    assert theirs.json()["id"] != first.json()["id"]
    with lab.database.unit_of_work() as s:
        assert len(s.scalars(select(FabricationJob)).all()) == 2


class _QueueDown:
    """The job queue's port with its tables unreachable for new print preparations."""

    def __init__(self, real: object) -> None:
        self._real = real

    def defer_print_preparation(self, job_id: UUID) -> None:
        raise JobQueueUnavailable("the job tables cannot be reached")

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def test_a_job_whose_preparation_cannot_be_queued_is_accepted_and_prepared_by_the_sweep(
    lab: PrintLab,
) -> None:
    lab.container.jobs = _QueueDown(lab.container.jobs)  # type: ignore[assignment]
    key = lab.upload("later.gcode")
    body = {"deviceId": str(lab["prusa-mk4"]), "fileKey": key, "idempotencyKey": "k"}
    answer = lab.client.post("/api/fabrication/jobs", json=body, headers=lab.operator.headers)
    assert answer.status_code == 202, answer.text  # not 503: a retry would print twice
    job_id = answer.json()["id"]
    assert answer.json()["details"]["stage"] == "slicing"
    retried = lab.client.post("/api/fabrication/jobs", json=body, headers=lab.operator.headers)
    assert retried.json()["id"] == job_id

    asyncio.run(lab.work_queue())  # nothing was queued for it
    assert lab.job(job_id).details["stage"] == "slicing"
    # Within the grace a preparation may still be running: the sweep leaves it alone.
    _advance_print_queues(
        lab.container, lab.database_url, lab.container.clock() + timedelta(minutes=5)
    )
    assert lab.job(job_id).details["stage"] == "slicing"
    _advance_print_queues(
        lab.container, lab.database_url, lab.container.clock() + timedelta(minutes=11)
    )
    assert lab.job(job_id).details["stage"] == "queued"
    with lab.database.unit_of_work() as s:
        assert len(s.scalars(select(FabricationJob)).all()) == 1


def _advance_print_queues(container: bootstrap.Container, database_url: str, now: datetime) -> None:
    """One run of the minutely print-queue task at ``now``, then the jobs it deferred."""

    async def main() -> None:
        context = bootstrap.job_context(replace(container, clock=lambda: now))
        app = build_job_app(database_url)
        async with app.open_async():
            await app.configure_task(PRINT_QUEUES_TASK).defer_async(timestamp=int(now.timestamp()))
            await run_worker(app, context, concurrency=1, wait=False)

    asyncio.run(main())


def test_a_failure_pause_while_the_broker_is_down_fails_with_the_reason_and_nothing_is_sent_late(
    lab: PrintLab,
) -> None:
    printer = lab["voron-24"]
    key = lab.upload("windy.gcode")

    async def scenario() -> dict[str, str]:
        port = free_port()
        address = BrokerAddress("127.0.0.1", port)
        async with (
            embedded_broker(port) as broker,
            running_bus(address, "lab") as bus,
            lab_fleet(lab.container, bus) as fleet,
        ):
            wired = replace(
                lab.container,
                drivers=bootstrap.device_drivers(bus, lab.container.settings),
                bus=bus,
            )
            tracker = bootstrap.print_tracker(wired)
            created = await asyncio.to_thread(lab.post_job, printer, key)
            job_id = str(created["id"])
            await lab.work_queue(wired)
            await tracker.round()
            assert lab.job(job_id).status is FabricationStatus.PRINTING
            shot = await asyncio.to_thread(
                lab.client.put,
                f"/api/fabrication/jobs/{job_id}/snapshots/cam.png",
                content=PNG,
                headers=lab.operator.headers,
            )

            await broker.stop()
            await eventually(lambda: not bus.connected)
            failure = await asyncio.to_thread(
                lab.client.post,
                f"/api/fabrication/jobs/{job_id}/monitor-events",
                json={
                    "eventType": "spaghetti_detected",
                    "confidence": 0.95,
                    "snapshotKey": shot.json()["snapshotKey"],
                },
                headers=lab.operator.headers,
            )
            assert failure.status_code == 201, failure.text  # recorded; the pause is queued
            await lab.work_queue(wired)  # the pause cannot be sent: failed
            pause = _command(lab.database, failure.json()["pauseCommandId"])
            assert pause.status is CommandStatus.FAILED
            # Consistent: the job is not called paused, and the printer goes on printing.
            assert lab.job(job_id).status is FabricationStatus.PRINTING
            assert fleet.devices[printer].snapshot()["state"] in ("heating", "printing")

            await broker.start()
            await eventually(lambda: bus.connected, within=10)
            await asyncio.sleep(0.3)  # resubscribed
            await asyncio.to_thread(fleet.report)
            await asyncio.sleep(0.2)
            # The failed pause was refused, not queued: it never reaches the printer late.
            assert fleet.devices[printer].snapshot()["state"] in ("heating", "printing")
            again = await asyncio.to_thread(
                lab.client.post,
                f"/api/device/{printer}/command",
                json={"intent": "print_pause", "payload": {}, "correlationId": "pause-again"},
                headers=lab.operator.headers,
            )
            assert again.status_code == 202, again.text
            await lab.work_queue(wired)
            assert _command(lab.database, again.json()["commandId"]).status is CommandStatus.ACKED
            await tracker.round()
            assert lab.job(job_id).status is FabricationStatus.PAUSED
            return {"job": job_id, "reason": pause.failure_reason or ""}

    result = asyncio.run(scenario())
    assert "the MQTT broker is not reachable" in result["reason"]
    assert result["reason"].startswith("voron-24")
    titles = _notices(lab.database, result["job"])
    assert titles == [
        "Pausing the print on Voron: spaghetti detected",
        "URGENT: the print on Voron was NOT paused",
    ]
    with lab.database.unit_of_work() as s:
        urgent = s.scalars(
            select(Notification).where(
                Notification.related_job_id == UUID(result["job"]),
                Notification.payload["title"].astext.startswith("URGENT"),
            )
        ).one()
        assert result["reason"] in urgent.payload["body"]


def _command(database: Database, command_id: str) -> DeviceCommand:
    return detached(database, DeviceCommand, command_id)


def test_the_tracker_publishes_status_and_progress_retained_on_the_jobs_topic(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("watched.gcode")

    async def latest_retained(address: BrokerAddress, topic: str) -> dict[str, object]:
        """What a client connecting now gets on ``topic``: the retained message."""
        seen: list[dict[str, object]] = []

        async def collect(_: str, payload: bytes) -> None:
            seen.append(json.loads(payload))

        async with running_bus(address, "late-subscriber") as late:
            late.subscribe(topic, collect)
            await eventually(lambda: seen)
        return seen[-1]

    async def scenario() -> list[dict[str, object]]:
        async with live_lab(lab.container) as (bus, fleet, wired):
            tracker = bootstrap.print_tracker(wired)
            created = await asyncio.to_thread(lab.post_job, printer, key)
            topic = f"kitty/jobs/{created['id']}"
            await lab.work_queue(wired)
            await tracker.round()
            simulator = fleet.devices[printer]
            simulator.tick(120)
            simulator.tick(60)  # 10 % printed
            await asyncio.to_thread(fleet.report)
            await asyncio.sleep(0.2)
            await tracker.round()
            await asyncio.sleep(0.2)  # published, through the broker
            printing = await latest_retained(bus.address, topic)
            await finish_print(fleet, printer)
            await asyncio.sleep(0.2)
            await tracker.round()
            await asyncio.sleep(0.2)
            done = await latest_retained(bus.address, topic)
            return [printing, done, {"id": created["id"], "device": str(printer)}]

    printing, done, ids = asyncio.run(scenario())
    assert printing["jobId"] == ids["id"] and printing["deviceId"] == ids["device"]
    assert (printing["status"], printing["progress"], printing["printer"]) == (
        "printing",
        0.1,
        "printing",
    )
    assert (done["status"], done["progress"], done["printer"]) == ("completed", 1.0, "completed")


def test_a_start_interrupted_after_its_claim_goes_back_to_the_queue_and_then_prints(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    # Nothing queued behind the test's back: each step is run by hand.
    lab.container.jobs = _QueueDown(lab.container.jobs)  # type: ignore[assignment]
    created = lab.post_job(printer, lab.upload("resume.gcode"))
    job_id = str(created["id"])

    async def scenario() -> None:
        async with live_lab(lab.container) as (_bus, _fleet, wired):
            assert await asyncio.to_thread(
                fabrication.prepare,
                lab.database,
                lab.container.artifacts,
                None,
                None,
                UUID(job_id),
                lab.container.clock,
            )
            # A worker claims the job for starting, then dies before its print_start.
            now = lab.container.clock()
            plan = await asyncio.to_thread(fabrication.claim_next, lab.database, printer, now)
            assert isinstance(plan, fabrication.StartPlan)
            tracker = bootstrap.print_tracker(wired)
            await tracker.round()  # within the grace: still being started, left alone
            assert lab.job(job_id).details["stage"] == "starting"

            late = replace(wired, clock=lambda: now + timedelta(minutes=3))
            await bootstrap.print_tracker(late).round()
            requeued = lab.job(job_id)
            assert requeued.details["stage"] == "queued"
            assert "its start was interrupted" in requeued.details["waiting_for"]
            assert requeued.origin_command_id is None

            await asyncio.to_thread(
                _advance_print_queues, wired, lab.database_url, lab.container.clock()
            )  # the minutely queue task starts it again
            await tracker.round()
            assert lab.job(job_id).status is FabricationStatus.PRINTING

    asyncio.run(scenario())
    with lab.database.unit_of_work() as s:
        starts = s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "print_start"))
        assert [c.status for c in starts] == [CommandStatus.ACKED]  # started once
