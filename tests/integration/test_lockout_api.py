"""Lockout/tagout over the API: placing, listing, removing, overriding; the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    AuditEntry,
    Device,
    DeviceCommand,
    DeviceLock,
    Notification,
    SafetyEvent,
)
from kittylab.domain.enums import OnlineState
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.records import audit
from kittylab.safety import locks
from kittylab.safety.lockout import lock_refusal
from tests.integration.conftest import Person, _person


@pytest.fixture
def devices(
    container: bootstrap.Container, database: Database, demo_lab_path: Path
) -> dict[str, UUID]:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        return {d.external_id: d.id for d in s.scalars(select(Device))}


@pytest.fixture
def other_operator(database: Database) -> Person:
    return _person(database, "oscar", ["operator"])


def place(client: TestClient, who: Person, device: UUID, reason: Any = "belt change") -> Any:
    return client.post(f"/api/devices/{device}/locks", json={"reason": reason}, headers=who.headers)


def remove(client: TestClient, who: Person, lock_id: str, override: str | None = None) -> Any:
    body = {"overrideReason": override} if override is not None else None
    return client.post(f"/api/locks/{lock_id}/remove", json=body, headers=who.headers)


def audit_actions(database: Database) -> list[tuple[str, dict[str, Any]]]:
    """The lock entries of the audit log (people and keys created by fixtures are there too)."""
    with database.unit_of_work() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith("lock.")).order_by(AuditEntry.seq)
        ).all()
        return [(row.action, row.details) for row in rows]


def test_place_list_and_remove_by_the_owner(
    client: TestClient, operator: Person, devices: dict[str, UUID], database: Database
) -> None:
    spindle = devices["cnc-spindle"]
    placed = place(client, operator, spindle, "changing the spindle belt")
    assert placed.status_code == 201, placed.text
    lock = placed.json()
    assert lock["deviceExternalId"] == "cnc-spindle"
    assert lock["ownerId"] == str(operator.user_id)
    assert lock["active"] is True and lock["removedAt"] is None

    on_device = client.get(f"/api/devices/{spindle}/locks", headers=operator.headers).json()
    assert [row["id"] for row in on_device] == [lock["id"]]
    listed = client.get("/api/locks", params={"active": "true"}, headers=operator.headers).json()
    assert [row["id"] for row in listed["items"]] == [lock["id"]]

    removed = remove(client, operator, lock["id"])
    assert removed.status_code == 200, removed.text
    assert removed.json()["active"] is False
    assert removed.json()["removedBy"] == str(operator.user_id)
    assert removed.json()["overrideEventId"] is None
    assert client.get(f"/api/devices/{spindle}/locks", headers=operator.headers).json() == []
    active = client.get("/api/locks", params={"active": "true"}, headers=operator.headers).json()
    assert active["items"] == []
    history = client.get("/api/locks", params={"active": "false"}, headers=operator.headers)
    assert [row["id"] for row in history.json()["items"]] == [lock["id"]]

    trail = audit_actions(database)
    assert [action for action, _ in trail] == ["lock.placed", "lock.removed"]
    assert trail[0][1]["device"] == "cnc-spindle"
    assert trail[0][1]["reason"] == "changing the spindle belt"
    assert trail[0][1]["owner_id"] == str(operator.user_id)
    with database.unit_of_work() as s:
        assert audit.verify_chain(s).intact


def test_removing_a_lock_twice_is_a_conflict(
    client: TestClient, operator: Person, devices: dict[str, UUID]
) -> None:
    lock = place(client, operator, devices["cnc-spindle"]).json()
    assert remove(client, operator, lock["id"]).status_code == 200
    again = remove(client, operator, lock["id"])
    assert again.status_code == 409
    assert "already removed" in again.json()["detail"]


def test_another_operator_cannot_remove_my_lock(
    client: TestClient,
    operator: Person,
    other_operator: Person,
    devices: dict[str, UUID],
    database: Database,
) -> None:
    lock = place(client, operator, devices["cnc-spindle"]).json()
    refused = remove(client, other_operator, lock["id"])
    assert refused.status_code == 403
    assert "only Olivia Operator can remove it" in refused.json()["detail"]
    tried = remove(client, other_operator, lock["id"], override="I need the machine")
    assert tried.status_code == 403
    assert "needs the safety role" in tried.json()["detail"]
    with database.unit_of_work() as s:
        assert s.get(DeviceLock, UUID(lock["id"])).removed_at is None  # type: ignore[union-attr]
    assert [action for action, _ in audit_actions(database)] == ["lock.placed"]


def test_the_admin_role_cannot_remove_or_override_someone_elses_lock(
    client: TestClient, operator: Person, admin: Person, devices: dict[str, UUID]
) -> None:
    lock = place(client, operator, devices["cnc-spindle"]).json()
    assert remove(client, admin, lock["id"]).status_code == 403
    overridden = remove(client, admin, lock["id"], override="admin says so")
    assert overridden.status_code == 403
    assert "lockout is personal" in overridden.json()["detail"]
    current = client.get(f"/api/locks/{lock['id']}", headers=admin.headers).json()
    assert current["active"] is True


def test_a_safety_override_is_a_safety_event_audited_and_told_to_the_owner(
    client: TestClient,
    operator: Person,
    safety_lead: Person,
    devices: dict[str, UUID],
    database: Database,
) -> None:
    spindle = devices["cnc-spindle"]
    lock = place(client, operator, spindle, "changing the spindle belt").json()
    without_reason = remove(client, safety_lead, lock["id"])
    assert without_reason.status_code == 403

    overridden = remove(client, safety_lead, lock["id"], "Olivia went home; belt checked")
    assert overridden.status_code == 200, overridden.text
    body = overridden.json()
    assert body["active"] is False and body["removedBy"] == str(safety_lead.user_id)
    event_id = UUID(body["overrideEventId"])
    with database.unit_of_work() as s:
        event = s.get(SafetyEvent, event_id)
        assert event is not None
        assert event.event_type.value == "override" and event.status.value == "approved"
        assert event.initiated_by == event.approved_by == safety_lead.user_id
        assert event.device_id == spindle
        assert event.zone_id == s.get(Device, spindle).zone_id  # type: ignore[union-attr]
        assert event.reason == "Olivia went home; belt checked"
        assert event.details == {
            "override": "lock",
            "lock_id": lock["id"],
            "owner_id": str(operator.user_id),
        }
        assert event.resolved_at is not None
        told = s.scalars(
            select(Notification).where(Notification.related_safety_event_id == event_id)
        ).all()
        assert told and all(n.recipient == "olivia" for n in told)
        assert "Olivia went home" in told[0].payload["body"]
    trail = audit_actions(database)
    assert [action for action, _ in trail] == ["lock.placed", "lock.override"]
    details = trail[1][1]
    assert details["override_reason"] == "Olivia went home; belt checked"
    assert details["safety_event_id"] == str(event_id)
    assert details["owner_id"] == str(operator.user_id)
    assert client.get(f"/api/devices/{spindle}/locks", headers=operator.headers).json() == []


def test_a_second_lock_by_the_same_person_is_a_conflict(
    client: TestClient, operator: Person, devices: dict[str, UUID]
) -> None:
    assert place(client, operator, devices["cnc-spindle"]).status_code == 201
    again = place(client, operator, devices["cnc-spindle"])
    assert again.status_code == 409
    assert "you already hold a lock on cnc-spindle" in again.json()["detail"]
    # A different device is a different lock.
    assert place(client, operator, devices["laser-power"]).status_code == 201


def test_group_lockout_needs_every_holder_to_remove_their_lock(
    client: TestClient,
    operator: Person,
    other_operator: Person,
    devices: dict[str, UUID],
    database: Database,
) -> None:
    spindle = devices["cnc-spindle"]
    mine = place(client, operator, spindle, "changing the belt").json()
    theirs = place(client, other_operator, spindle, "cleaning the coolant tank").json()
    with database.unit_of_work() as s:
        facts = locks.active_locks(s, spindle)
    refusal = lock_refusal("power_on", facts)
    assert refusal is not None
    assert "Olivia Operator" in refusal and "Oscar" in refusal

    assert remove(client, operator, mine["id"]).status_code == 200
    with database.unit_of_work() as s:
        facts = locks.active_locks(s, spindle)
    assert [f.owner_id for f in facts] == [other_operator.user_id]
    assert lock_refusal("power_on", facts) is not None

    assert remove(client, other_operator, theirs["id"]).status_code == 200
    with database.unit_of_work() as s:
        assert lock_refusal("power_on", locks.active_locks(s, spindle)) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({}, "reason"),
        ({"reason": "x" * 2001}, "reason"),
        ({"reason": "ok", "owner": "someone"}, "owner"),
    ],
)
def test_bad_lock_requests_name_the_field(
    client: TestClient,
    operator: Person,
    devices: dict[str, UUID],
    body: dict[str, Any],
    field: str,
) -> None:
    answer = client.post(
        f"/api/devices/{devices['cnc-spindle']}/locks", json=body, headers=operator.headers
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == field


def test_a_blank_override_reason_is_refused_naming_the_field(
    client: TestClient, operator: Person, safety_lead: Person, devices: dict[str, UUID]
) -> None:
    lock = place(client, operator, devices["cnc-spindle"]).json()
    answer = remove(client, safety_lead, lock["id"], override="  ")
    assert answer.status_code == 422
    assert answer.json()["field"] == "overrideReason"


def test_unknown_devices_and_locks_are_404_and_reading_needs_a_token(
    client: TestClient, operator: Person, devices: dict[str, UUID]
) -> None:
    nobody = "0190f7a1-0000-7000-8000-000000000000"
    assert place(client, operator, UUID(nobody)).status_code == 404
    assert client.get(f"/api/devices/{nobody}/locks", headers=operator.headers).status_code == 404
    assert remove(client, operator, nobody).status_code == 404
    assert client.get("/api/locks").status_code == 401


def test_lock_lists_filter_by_owner_and_device_and_paginate(
    client: TestClient,
    operator: Person,
    other_operator: Person,
    devices: dict[str, UUID],
) -> None:
    place(client, operator, devices["cnc-spindle"])
    place(client, operator, devices["laser-power"])
    place(client, other_operator, devices["laser-power"])
    mine = client.get(
        "/api/locks", params={"ownerId": str(operator.user_id)}, headers=operator.headers
    ).json()["items"]
    assert {row["deviceExternalId"] for row in mine} == {"cnc-spindle", "laser-power"}
    laser = client.get(
        "/api/locks", params={"deviceId": str(devices["laser-power"])}, headers=operator.headers
    ).json()["items"]
    assert len(laser) == 2
    first = client.get("/api/locks", params={"limit": 2}, headers=operator.headers).json()
    assert len(first["items"]) == 2 and first["nextCursor"]
    rest = client.get(
        "/api/locks", params={"limit": 2, "cursor": first["nextCursor"]}, headers=operator.headers
    ).json()
    assert len(rest["items"]) == 1 and rest["nextCursor"] is None


# -- a lock isolates every energy source (issue 13, hole 8) ---------------------------------


def command(client: TestClient, who: Person, device: UUID, intent: str, **payload: Any) -> Any:
    return client.post(
        f"/api/device/{device}/command",
        json={"intent": intent, "payload": payload},
        headers=who.headers,
    )


@pytest.fixture
def locked_printer(
    client: TestClient, other_operator: Person, devices: dict[str, UUID], database: Database
) -> UUID:
    printer = devices["prusa-mk4"]
    with database.unit_of_work() as s:
        row = s.get(Device, printer)
        assert row is not None
        row.online_state = OnlineState.ONLINE
    assert place(client, other_operator, printer, "changing the hotend heater").status_code == 201
    return printer


@pytest.mark.parametrize(
    ("intent", "payload"),
    [
        ("printer_heat", {"nozzle": 250, "bed": 100}),
        ("print_start", {"file": "benchy.gcode"}),
        ("print_resume", {}),
    ],
)
def test_a_locked_printer_refuses_heat_start_and_resume_for_everyone(
    client: TestClient,
    operator: Person,
    other_operator: Person,
    locked_printer: UUID,
    database: Database,
    intent: str,
    payload: dict[str, Any],
) -> None:
    # The lock's own holder is refused too: a lock isolates energy, it is not a permission.
    for who in (operator, other_operator):
        refused = command(client, who, locked_printer, intent, **payload)
        assert refused.status_code == 403, refused.text
        assert "locked out by" in refused.json()["detail"]
        assert "changing the hotend heater" in refused.json()["detail"]
    with database.unit_of_work() as s:
        assert s.scalar(select(DeviceCommand).where(DeviceCommand.intent == intent)) is None


@pytest.mark.parametrize("intent", ["print_pause", "printer_cooldown", "printer_status"])
def test_a_locked_printer_still_takes_the_safe_direction_and_reads(
    client: TestClient, operator: Person, locked_printer: UUID, intent: str
) -> None:
    answered = command(client, operator, locked_printer, intent)
    assert answered.status_code == 202, answered.text


def test_removing_the_last_lock_lets_the_printer_heat_again(
    client: TestClient, other_operator: Person, locked_printer: UUID
) -> None:
    lock_id = client.get(f"/api/devices/{locked_printer}/locks", headers=other_operator.headers)
    assert remove(client, other_operator, lock_id.json()[0]["id"]).status_code == 200
    heated = command(client, other_operator, locked_printer, "printer_heat", nozzle=210)
    assert heated.status_code == 202, heated.text


def test_placing_a_lock_fails_an_unsent_heat_and_tells_who_asked(
    client: TestClient,
    operator: Person,
    other_operator: Person,
    devices: dict[str, UUID],
    database: Database,
) -> None:
    printer = devices["prusa-mk4"]
    with database.unit_of_work() as s:
        row = s.get(Device, printer)
        assert row is not None
        row.online_state = OnlineState.ONLINE
    heat = command(client, operator, printer, "printer_heat", nozzle=250)
    status = command(client, operator, printer, "printer_status")
    assert heat.status_code == 202 and status.status_code == 202
    # The worker has not sent them yet when the heater change begins.
    assert place(client, other_operator, printer, "changing the hotend heater").status_code == 201
    with database.unit_of_work() as s:
        stopped = s.get(DeviceCommand, UUID(heat.json()["commandId"]))
        read = s.get(DeviceCommand, UUID(status.json()["commandId"]))
        assert stopped is not None and read is not None
        assert stopped.status.value == "failed"
        assert "changing the hotend heater" in (stopped.failure_reason or "")
        assert read.status.value == "pending"  # a read is never stopped by a lock
        titles = [n.payload.get("title") for n in s.scalars(select(Notification))]
    assert any(
        str(t).startswith("Not sent: printer_heat on") and str(t).endswith("(locked out)")
        for t in titles
    ), titles
    assert audit_actions(database)[-1][0] == "lock.command_failed"
