"""Questions about the lab's own state answered locally from its records, with no model
(issue 16, item 1), through ``POST /api/query`` on the real database with the demo lab
and the application as ``bootstrap`` wires it: readings with their age, a stale reading
refreshed through the read intent and waited for (bounded), a device the caller may not
read refused, and requests to act never taken for questions."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceCommand, RoutingDecision, User, Zone
from kittylab.config import Settings
from kittylab.devices import telemetry
from kittylab.domain.enums import OnlineState, PresenceStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import presence
from kittylab.safety import locks
from tests.integration.conftest import Person, _person

WAIT = 0.6


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    answers = s.query.answers.model_copy(update={"fresh_read_wait_seconds": WAIT})
    return s.model_copy(update={"query": s.query.model_copy(update={"answers": answers})})


class Lab:
    def __init__(self, client: TestClient, database: Database, c: bootstrap.Container) -> None:
        self.client = client
        self.database = database
        self.container = c

    def ask(self, person: Person, text: str, **extra: Any) -> dict[str, Any]:
        body = {"channel": "cli", "input": {"text": text}, **extra}
        r = self.client.post("/api/query", json=body, headers=person.headers)
        assert r.status_code in (200, 202), r.text
        return dict(r.json())

    def report(self, external_id: str, state: dict[str, Any], ago: float = 1.0) -> None:
        now = self.container.clock()
        with self.database.unit_of_work() as s:
            telemetry.store_batch(
                s,
                [
                    telemetry.IncomingEvent(
                        None, external_id, "state", state, now - timedelta(seconds=ago)
                    )
                ],
                now,
            )

    def device_id(self, external_id: str) -> Any:
        with self.database.unit_of_work() as s:
            return s.scalar(select(Device.id).where(Device.external_id == external_id))

    def decision(self, decision_id: str) -> RoutingDecision:
        with self.database.unit_of_work() as s:
            row = s.get(RoutingDecision, decision_id)
            assert row is not None
            return row

    def commands(self, intent: str | None = None) -> list[DeviceCommand]:
        with self.database.unit_of_work() as s:
            stmt = select(DeviceCommand)
            if intent is not None:
                stmt = stmt.where(DeviceCommand.intent == intent)
            return list(s.scalars(stmt))


@pytest.fixture
def lab(
    container: bootstrap.Container,
    client: TestClient,
    database: Database,
    demo_lab_path: Path,
    operator: Person,
    engineer: Person,
    safety_lead: Person,
) -> Lab:
    manifest = replace(load_manifest(demo_lab_path), users=())
    with database.unit_of_work() as s:
        apply_manifest(s, manifest, container.clock())
        s.execute(update(Device).values(online_state=OnlineState.ONLINE))
    lab = Lab(client, database, container)
    lab.report("farm-climate", {"temperature": {"value": 22.4, "unit": "°C"},
                                "humidity": {"value": 45.2, "unit": "%"}})  # fmt: skip
    lab.report(
        "prusa-mk4",
        {"state": "printing", "file": "bracket.gcode", "progress": 0.37, "seconds_left": 1260,
         "nozzle": {"actual": 214.6, "target": 215}, "bed": {"actual": 60.2, "target": 60}},
    )  # fmt: skip
    lab.report("cnc-door", {"locked": True})
    lab.report("farm-lights", {"on": True, "brightness": 30})
    return lab


@pytest.fixture
def engineer(database: Database) -> Person:
    return _person(database, "erin", ["engineer"])


def test_a_sensor_question_is_answered_with_the_value_and_its_age(
    lab: Lab, engineer: Person
) -> None:
    body = lab.ask(engineer, "how warm is it near the printers?")
    routing = body["routing"]
    assert routing["selectedTier"] == "local"
    assert routing["outcome"] == "answered"
    assert routing["device"] == "farm-climate"
    assert routing["cache"] == "bypass"
    reply = body["replies"][0]["text"]
    assert reply.startswith("Print farm: 22.4 °C"), reply
    assert " s ago" in reply
    assert body["command"] is None  # fresh enough: nothing asked of the device
    details = lab.decision(routing["decisionId"]).details
    assert details["answer"] == {
        "kind": "sensor_reading", "devices": ["farm-climate"], "zone": "print-farm",
        "freshReads": 0, "refused": False,
    }  # fmt: skip


def test_printer_door_light_and_follow_up_questions(lab: Lab, operator: Person) -> None:
    body = lab.ask(operator, "when will the prusa be finished")
    reply = body["replies"][0]["text"]
    assert "about 21 min left" in reply and "37 % done" in reply, reply
    conversation = body["conversationId"]
    # "it" is the printer just asked about.
    hot = lab.ask(operator, "how hot is its nozzle", conversationId=conversation)
    assert "nozzle 215 °C (target 215 °C)" in hot["replies"][0]["text"]
    door = lab.ask(operator, "is the cnc door open?")["replies"][0]["text"]
    assert door.startswith("The cnc door is locked"), door
    light = lab.ask(operator, "are the farm lights still on")["replies"][0]["text"]
    assert "on at 30 %" in light, light


def test_locks_presence_and_approvals_are_answered_for_whoever_asks(
    lab: Lab, operator: Person, safety_lead: Person
) -> None:
    now = lab.container.clock()
    with lab.database.unit_of_work() as s:
        locks.place(s, lab.device_id("cnc-spindle"), operator.user_id, "changing the bit", now)
        welding = s.scalar(select(Zone.id).where(Zone.name == "welding-bay"))
        presence.record_manual(
            s, zone_id=welding, user_id=safety_lead.user_id, status=PresenceStatus.PRESENT, now=now
        )
    holder = lab.ask(safety_lead, "who has a lock on the spindle")["replies"][0]["text"]
    assert "Olivia's lock is on the cnc spindle" in holder, holder
    mine = lab.ask(operator, "do I hold any locks?")["replies"][0]["text"]
    assert "cnc spindle" in mine
    who = lab.ask(operator, "who's in the welding bay right now")["replies"][0]["text"]
    assert who == "Welding bay: Sam (1 person).", who
    held = lab.ask(operator, "unlock the cnc door")
    assert held["routing"]["outcome"] == "pending_hazard"
    waiting = lab.ask(safety_lead, "is anything waiting for me to approve?")["replies"][0]["text"]
    assert "1 waiting for your approval" in waiting and "door unlock on the cnc door" in waiting
    own = lab.ask(operator, "what needs my approval")["replies"][0]["text"]
    assert own.startswith("Nothing is waiting for your approval"), own
    assert "for others to approve" in own


def test_a_stale_reading_asks_the_device_and_answers_with_what_it_has_in_time(
    lab: Lab, engineer: Person
) -> None:
    lab.report("fume-sensor", {"air_quality": {"value": 12.3, "unit": "µg/m³ PM2.5"}}, ago=600)
    lab.ask(engineer, "how humid is the print farm")  # the grammar compiles on first use
    started = time.perf_counter()
    body = lab.ask(engineer, "how's the air in the welding bay")
    took = time.perf_counter() - started
    reply = body["replies"][0]["text"]
    assert "12.3 µg/m³ PM2.5, 10 min ago" in reply, reply
    assert f"did not come within {WAIT:g} s" in reply
    assert took >= WAIT  # waited for the reading, bounded (loosely: CI machines are shared)
    assert took < WAIT + 10
    [read] = lab.commands("sensor_read")
    assert read.requested_by == engineer.user_id
    assert body["command"]["id"] == str(read.id)
    assert lab.decision(body["routing"]["decisionId"]).details["answer"]["freshReads"] == 1


def test_a_fresh_reading_that_comes_in_time_is_the_answer(lab: Lab, engineer: Person) -> None:
    lab.report("fume-sensor", {"air_quality": {"value": 12.3, "unit": "µg/m³ PM2.5"}}, ago=600)

    def device_answers() -> None:
        for _ in range(100):
            if lab.commands("sensor_read"):
                lab.report("fume-sensor", {"air_quality": {"value": 30.1, "unit": "µg/m³"}}, 0)
                return
            time.sleep(0.02)

    reporter = threading.Thread(target=device_answers)
    reporter.start()
    body = lab.ask(engineer, "read the fume sensor")
    reporter.join()
    reply = body["replies"][0]["text"]
    assert "30.1 µg/m³" in reply and "did not come" not in reply, reply
    assert body["routing"]["intent"] == "sensor_read"
    assert body["routing"]["outcome"] == "answered"


def test_a_device_the_caller_may_not_read_is_refused(
    lab: Lab, engineer: Person, safety_lead: Person
) -> None:
    with lab.database.unit_of_work() as s:
        sensor = s.scalars(select(Device).where(Device.external_id == "farm-climate")).one()
        sensor.attributes = {**sensor.attributes, "read_roles": ["operator"]}
    body = lab.ask(engineer, "what's the humidity in the print farm")
    assert body["routing"]["outcome"] == "refused"
    reply = body["replies"][0]["text"]
    assert "I can't tell you about the farm climate" in reply, reply
    assert "45" not in reply and "22.4" not in reply
    assert lab.commands() == []
    allowed = lab.ask(safety_lead, "what's the humidity in the print farm")
    assert "45 % RH" in allowed["replies"][0]["text"]


def test_requests_to_act_and_world_questions_are_not_taken_for_state_questions(
    lab: Lab, operator: Person
) -> None:
    act = lab.ask(operator, "turn off the farm lights")
    assert act["routing"]["outcome"] == "command_recorded"
    assert act["command"]["intent"] == "light_off"
    world = lab.ask(operator, "what temperature should I print PETG at")
    assert world["routing"]["outcome"] != "answered" or world["routing"]["selectedTier"] != "local"
    assert "Print farm" not in world["replies"][0]["text"]


def test_state_answers_are_never_cached(lab: Lab, operator: Person) -> None:
    lab.ask(operator, "how humid is the print farm")
    lab.report("farm-climate", {"humidity": {"value": 61.0, "unit": "%"}}, ago=0)
    again = lab.ask(operator, "how humid is the print farm")
    assert again["routing"]["cache"] == "bypass"
    assert "61 % RH" in again["replies"][0]["text"]


def test_forced_frontier_skips_the_state_answer(lab: Lab, operator: Person) -> None:
    body = lab.ask(operator, "how humid is the print farm", forceTier="frontier")
    # Not answered from the records. Read as a question, it goes to the frontier tier (not
    # configured here); the semantic stage may read it as the sensor's read intent, a
    # device request, which never leaves the lab and is sent as a command instead.
    assert body["routing"]["outcome"] in ("unavailable", "command_recorded"), body
    if body["routing"]["outcome"] == "unavailable":
        assert "no frontier model" in body["replies"][0]["text"]


def test_people_named_in_questions_are_the_labs_people(lab: Lab, operator: Person) -> None:
    with lab.database.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(User)) >= 3
    where = lab.ask(operator, "where is sam?")["replies"][0]["text"]
    assert where == "Sam is not checked in to any zone.", where
