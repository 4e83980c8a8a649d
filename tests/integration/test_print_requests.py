"""Every print is a job (issue 16): a person's ``print_start`` — on the command route or
said to the conversation — becomes a FabricationJob that is queued, started by the
service, followed by the tracker and watched by the print watcher; the service's own start
of a job stays a command and never becomes a second job."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from kittylab import bootstrap
from kittylab.adapters.db.tables import Device, DeviceCommand, FabricationJob, RoutingDecision
from kittylab.api.app import create_app
from kittylab.devices.requests import request_command
from kittylab.domain.enums import FabricationStatus, OnlineState, Role
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.principal import Principal
from kittylab.safety import locks
from tests.integration.conftest import Person, _person
from tests.integration.live_bus import live_lab
from tests.integration.print_lab import PrintLab, SteppedClock, finish_print


def _print_start(lab: PrintLab, who: Person, printer: UUID, file: str, **extra: Any) -> Any:
    return lab.client.post(
        f"/api/device/{printer}/command",
        json={"intent": "print_start", "payload": {"file": file}, **extra},
        headers=who.headers,
    )


def _ask(lab: PrintLab, who: Person, text: str) -> dict[str, Any]:
    answer = lab.client.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": text}},
        headers=who.headers,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _jobs(lab: PrintLab) -> list[FabricationJob]:
    with lab.database.unit_of_work() as s:
        rows = list(s.scalars(select(FabricationJob).order_by(FabricationJob.created_at)))
        for row in rows:
            s.expunge(row)
        return rows


def _starts(lab: PrintLab) -> list[DeviceCommand]:
    with lab.database.unit_of_work() as s:
        rows = list(s.scalars(select(DeviceCommand).where(DeviceCommand.intent == "print_start")))
        for row in rows:
            s.expunge(row)
        return rows


def _online(lab: PrintLab) -> None:
    """As after the lab's first reports: the printers online and idle."""
    with lab.database.unit_of_work() as s:
        s.execute(update(Device).values(online_state=OnlineState.ONLINE))


@pytest.fixture
def engineer(database: Any) -> Person:
    return _person(database, "erin", ["engineer"])


# --- the command route --------------------------------------------------------------------


def test_a_print_start_of_an_upload_on_the_command_route_is_a_job_that_is_queued_tracked_and_watched(
    lab: PrintLab,
) -> None:
    printer = lab["prusa-mk4"]
    key = lab.upload("bracket.gcode")

    async def scenario() -> dict[str, Any]:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            answer = await asyncio.to_thread(
                _print_start, lab, lab.operator, printer, "bracket.gcode"
            )
            assert answer.status_code == 202, answer.text
            body: dict[str, Any] = answer.json()
            assert body["status"] == "queued"
            assert body["commandId"] is None  # the job's own start command comes later
            job_id = body["jobId"]
            job = lab.job(job_id)
            assert job.requested_by == lab.operator.user_id
            assert job.details["source_key"] == key  # the upload, checked by the G-code policy
            assert job.details["requested_via"] == "command"

            await lab.work_queue(wired)  # prepared (policy-checked), queued, started
            assert lab.job(job_id).details["stage"] == "starting"
            tracker = bootstrap.print_tracker(wired)
            await tracker.round()
            assert lab.job(job_id).status is FabricationStatus.PRINTING

            # Watched: a heater that stops heating pauses and cools the printer.
            clock = SteppedClock(lab.container.clock())
            watcher = bootstrap.print_watcher(replace(wired, clock=clock))
            assert watcher is not None
            simulator = fleet.devices[printer]
            simulator.tick(120)
            simulator.break_heater("nozzle")  # type: ignore[attr-defined]
            raised = []
            for _ in range(4):
                simulator.tick(25)
                await asyncio.to_thread(fleet.report)
                await asyncio.sleep(0.05)
                raised += await watcher.round()
                clock.now += timedelta(seconds=25)
            assert [v.condition.value for v in raised] == ["thermal_runaway"]
            await lab.work_queue(wired)
            assert fleet.devices[printer].snapshot()["state"] == "paused"
            await tracker.round()
            assert lab.job(job_id).status is FabricationStatus.PAUSED
            return body

    body = asyncio.run(scenario())
    # One job; its start is the service's own command, never re-routed into a second job.
    assert [str(j.id) for j in _jobs(lab)] == [body["jobId"]]
    starts = _starts(lab)
    assert [(s.payload, s.correlation_id) for s in starts] == [
        ({"file": "bracket.gcode"}, f"fabrication-job:{body['jobId']}")
    ]
    assert lab.job(body["jobId"]).origin_command_id == starts[0].id


def test_a_print_start_by_an_engineer_queues_a_job_but_she_still_switches_nothing(
    engineer: Person, lab: PrintLab
) -> None:
    _online(lab)
    answer = _print_start(lab, engineer, lab["voron-24"], "benchy.gcode")
    assert answer.status_code == 202, answer.text
    assert lab.job(answer.json()["jobId"]).requested_by == engineer.user_id
    lights = lab.client.post(
        f"/api/device/{lab['farm-lights']}/command",
        json={"intent": "light_on"},
        headers=engineer.headers,
    )
    assert lights.status_code == 403
    assert _starts(lab) == []


def test_a_retried_print_start_returns_the_first_job(lab: PrintLab) -> None:
    _online(lab)
    first = _print_start(lab, lab.operator, lab["voron-24"], "benchy.gcode", correlationId="t-1")
    again = _print_start(lab, lab.operator, lab["voron-24"], "benchy.gcode", correlationId="t-1")
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert first.json()["jobId"] == again.json()["jobId"]
    other = _print_start(lab, lab.operator, lab["voron-24"], "vase.gcode", correlationId="t-1")
    assert (other.status_code, other.json()["field"]) == (409, "correlationId")
    assert len(_jobs(lab)) == 1


def test_a_print_start_that_cannot_start_now_is_refused_now_and_no_job_is_left(
    lab: PrintLab,
) -> None:
    _online(lab)
    printer = lab["prusa-mk4"]
    hostile = _print_start(lab, lab.operator, printer, "../../system/commands/core/shutdown")
    assert (hostile.status_code, hostile.json()["field"]) == (422, "payload.file")
    lights = _print_start(lab, lab.operator, lab["farm-lights"], "benchy.gcode")
    assert lights.status_code == 422
    with lab.database.unit_of_work() as s:
        locks.place(s, printer, lab.operator.user_id, "changing the nozzle", lab.container.clock())
    locked = _print_start(lab, lab.operator, printer, "benchy.gcode")
    assert locked.status_code == 403, locked.text
    assert "locked out" in locked.json()["detail"]
    with lab.database.unit_of_work() as s:
        s.execute(
            update(Device)
            .where(Device.id == lab["voron-24"])
            .values(online_state=OnlineState.OFFLINE)
        )
    offline = _print_start(lab, lab.operator, lab["voron-24"], "benchy.gcode")
    assert offline.status_code == 409
    assert _jobs(lab) == [] and _starts(lab) == []


def test_a_persons_print_start_never_reaches_a_printer_but_as_a_job(lab: PrintLab) -> None:
    # The one gate refuses it whatever path calls it: no route can print unmonitored.
    _online(lab)
    caller = Principal(lab.operator.user_id, "olivia", frozenset({Role.OPERATOR}))
    with pytest.raises(ValidationFailed, match="print job"), lab.database.unit_of_work() as uow:
        request_command(
            uow,
            jobs=lab.container.jobs,
            device_id=lab["voron-24"],
            intent="print_start",
            payload={"file": "benchy.gcode"},
            requester=caller,
            now=lab.container.clock(),
        )
    assert _starts(lab) == []


# --- the conversation ---------------------------------------------------------------------


def test_print_said_to_the_conversation_of_a_file_on_the_printer_is_a_job_that_runs_to_the_bed(
    lab: PrintLab,
) -> None:
    printer = lab["voron-24"]

    async def scenario() -> str:
        async with live_lab(lab.container) as (_bus, fleet, wired):
            body = await asyncio.to_thread(
                _ask, lab, lab.operator, "print benchy.gcode on the voron"
            )
            assert body["routing"]["outcome"] == "print_queued", body
            assert body["command"] is None
            jobs = _jobs(lab)
            assert len(jobs) == 1
            job = jobs[0]
            assert str(job.id)[:8] in body["replies"][0]["text"]
            # Nothing in the artifact store: the printer's own file, named on the job.
            assert job.details["printer_file"] == "benchy.gcode"
            assert job.details["requested_via"] == "conversation"
            assert job.details["stage"] == "queued"
            await lab.work_queue(wired)
            tracker = bootstrap.print_tracker(wired)
            await tracker.round()
            assert lab.job(str(job.id)).status is FabricationStatus.PRINTING
            await finish_print(fleet, printer)
            for _ in range(100):
                if await tracker.round():
                    break
                await asyncio.sleep(0.05)
            assert lab.job(str(job.id)).status is FabricationStatus.COMPLETED
            # The part is on the bed: the next print, however asked for, waits for it.
            again = await asyncio.to_thread(_print_start, lab, lab.operator, printer, "vase.gcode")
            assert again.status_code == 409, again.text
            assert "still on the bed" in again.json()["detail"]
            return str(job.id)

    job_id = asyncio.run(scenario())
    starts = _starts(lab)
    assert [(s.payload, s.correlation_id) for s in starts] == [
        ({"file": "benchy.gcode"}, f"fabrication-job:{job_id}")
    ]
    with lab.database.unit_of_work() as s:
        decision = s.scalars(select(RoutingDecision)).one()
        assert decision.details["print_job_id"] == job_id
        assert s.scalar(select(func.count()).select_from(FabricationJob)) == 1


def test_an_engineer_queues_a_print_through_the_conversation(
    engineer: Person, lab: PrintLab
) -> None:
    _online(lab)
    body = _ask(lab, engineer, "print benchy.gcode on the voron")
    assert body["routing"]["outcome"] == "print_queued", body
    assert [j.requested_by for j in _jobs(lab)] == [engineer.user_id]


def test_a_print_the_conversation_cannot_start_now_is_answered_and_no_job_is_left(
    lab: PrintLab,
) -> None:
    # Printers offline (nothing reported yet): refused with the reason, as a command was.
    body = _ask(lab, lab.operator, "print benchy.gcode on the voron")
    assert body["routing"]["outcome"] == "refused", body
    assert "offline" in body["replies"][0]["text"]
    assert _jobs(lab) == []


def test_a_print_asked_from_outside_the_trusted_networks_is_refused_and_no_job_is_left(
    lab: PrintLab,
) -> None:
    _online(lab)
    with TestClient(
        create_app(lab.container), raise_server_exceptions=False, client=("203.0.113.7", 40000)
    ) as internet:
        said = internet.post(
            "/api/query",
            json={"channel": "remote", "input": {"text": "print benchy.gcode on the voron"}},
            headers=lab.operator.headers,
        )
        sent = internet.post(
            f"/api/device/{lab['voron-24']}/command",
            json={"intent": "print_start", "payload": {"file": "benchy.gcode"}},
            headers=lab.operator.headers,
        )
    assert said.status_code == 200, said.text
    assert said.json()["routing"]["outcome"] == "refused"
    assert "trusted networks" in said.json()["replies"][0]["text"]
    assert sent.status_code == 403
    assert _jobs(lab) == []


def test_a_print_start_of_an_upload_meets_the_printers_gcode_policy(lab: PrintLab) -> None:
    # The upload is the job's file: checked like any job's before anything reaches the
    # printer — a print_start by name is no way round the policy.
    _online(lab)
    lab.upload("hot.gcode", b"G28\nM104 S480\nG1 X10 Y10\n")
    answer = _print_start(lab, lab.operator, lab["voron-24"], "hot.gcode")
    assert answer.status_code == 202, answer.text
    asyncio.run(lab.work_queue())
    job = lab.job(answer.json()["jobId"])
    assert job.status is FabricationStatus.FAILED
    assert "G-code refused by the printer's G-code policy" in job.details["reason"]
    assert _starts(lab) == []
