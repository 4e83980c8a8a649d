"""The conversation's stop (issue 13): "stop everything in the laser room", "emergency stop
in the welding bay" and "stop the whole lab" go to the stop routes' own use case — never
held, for operators, safety and admin, audited — and "stop" with a device still means that
device."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AuditEntry, Device, DeviceCommand, Zone
from kittylab.conversation.actions import DispatchingStopper, DispatchingSubmitter
from kittylab.conversation.query import QueryService
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.domain.enums import OnlineState
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.conftest import Person, _person

pytestmark = pytest.mark.postgres


@pytest.fixture
def zones(
    container: bootstrap.Container, database: Database, demo_lab_path: Path
) -> dict[str, UUID]:
    """The demo lab (its people left out: the fixtures' own would clash), devices online,
    and a query service without a local model; zone name → id."""
    manifest = replace(load_manifest(demo_lab_path), users=())
    with database.unit_of_work() as s:
        apply_manifest(s, manifest, container.clock())
        s.execute(update(Device).values(online_state=OnlineState.ONLINE))
        found = {z.name: z.id for z in s.scalars(select(Zone))}
    settings = container.settings.query
    container.query = QueryService(
        database=database,
        settings=settings,
        understander=Understander(None, settings.grammar_threshold),
        submitter=DispatchingSubmitter(
            container.jobs, container.clock, bootstrap.safety_context(container.settings)
        ),
        stopper=DispatchingStopper(container.jobs, container.clock),
        clock=container.clock,
    )
    return found


def ask(client: TestClient, who: Person, text: str) -> dict[str, Any]:
    body = {"channel": "cli", "input": {"text": text}}
    response = client.post(
        "/api/query",
        content=json.dumps(body),
        headers={**who.headers, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def commands_by_zone(database: Database) -> dict[UUID, set[str]]:
    with database.unit_of_work() as s:
        rows = s.execute(
            select(Device.zone_id, DeviceCommand.intent, DeviceCommand.safety_event_id).join(
                Device, Device.id == DeviceCommand.device_id
            )
        ).all()
    assert all(held is None for _, _, held in rows)  # never held for approval
    found: dict[UUID, set[str]] = {}
    for zone_id, intent, _ in rows:
        found.setdefault(zone_id, set()).add(intent)
    return found


def stops(database: Database) -> list[AuditEntry]:
    with database.unit_of_work() as s:
        found = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "stop.requested")))
        s.expunge_all()
        return found


def test_stop_everything_in_the_laser_room_stops_that_zone_only(
    client: TestClient, operator: Person, zones: dict[str, UUID], database: Database
) -> None:
    answer = ask(client, operator, "stop everything in the laser room")
    routing = answer["routing"]
    assert (routing["intent"], routing["outcome"], routing["selectedTier"]) == (
        "stop",
        "stopped",
        "local",
    )
    assert answer["pendingHazard"] is None
    assert answer["replies"][0]["text"].startswith("Stopping laser room:")
    assert commands_by_zone(database) == {zones["laser-room"]: {"power_off", "door_lock"}}
    [entry] = stops(database)
    assert entry.actor_id == operator.user_id
    assert (entry.subject_type, entry.subject_id) == ("zone", str(zones["laser-room"]))


def test_emergency_stop_in_the_welding_bay_by_the_safety_role(
    client: TestClient, safety_lead: Person, zones: dict[str, UUID], database: Database
) -> None:
    answer = ask(client, safety_lead, "emergency stop in the welding bay")
    assert answer["routing"]["outcome"] == "stopped"
    assert set(commands_by_zone(database)) == {zones["welding-bay"]}


def test_stop_the_whole_lab_stops_every_zone(
    client: TestClient, operator: Person, zones: dict[str, UUID], database: Database
) -> None:
    answer = ask(client, operator, "stop the whole lab")
    assert answer["routing"]["outcome"] == "stopped", answer
    stopped = commands_by_zone(database)
    assert {zones[z] for z in ("laser-room", "welding-bay", "cnc-room", "print-farm")} <= set(
        stopped
    )
    [entry] = stops(database)
    assert entry.subject_type == "lab"


def test_an_engineer_asking_for_a_stop_is_refused_clearly_and_nothing_is_stopped(
    client: TestClient, zones: dict[str, UUID], database: Database
) -> None:
    engineer = _person(database, "eve", ["engineer"])
    answer = ask(client, engineer, "emergency stop in the welding bay")
    assert answer["routing"]["outcome"] == "refused"
    reply = answer["replies"][0]["text"]
    assert "needs the operator, safety or admin role, and yours is engineer" in reply
    assert "Nothing was stopped" in reply
    assert commands_by_zone(database) == {}
    assert stops(database) == []


def test_stop_with_a_device_still_means_that_device_s_own_stop(
    client: TestClient, operator: Person, zones: dict[str, UUID], database: Database
) -> None:
    answer = ask(client, operator, "shut down the welder")
    assert (answer["routing"]["intent"], answer["routing"]["device"]) == (
        "power_off",
        "welder-power",
    )
    assert commands_by_zone(database) == {zones["welding-bay"]: {"power_off"}}
    assert stops(database) == []
