"""Presence from UniFi Access webhooks (signed deliveries through the real API), audited
manual check-ins, and the safety role's override."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AuditEntry, SafetyEvent, User, Zone, ZonePresence
from kittylab.config import Settings
from kittylab.domain.enums import (
    HazardLevel,
    PresenceSource,
    PresenceStatus,
    SafetyEventType,
    SafetyStatus,
)
from kittylab.people import presence
from kittylab.records import audit
from kittylab.safety.webhook_signature import sign
from tests.integration.conftest import Person

pytestmark = pytest.mark.postgres

SECRET = "unifi-endpoint-secret-for-tests"
NOW = datetime(2026, 3, 2, 13, 50, tzinfo=UTC)
DOOR = "d2b87427-7efa-43c1-aa52-b00d40d99ecf"
BADGE = "unifi-user-olivia"
URL = "/api/presence/unifi"

# The people and tokens the fixtures create are audited too; these tests read the rest.
NOT_FIXTURES = (~AuditEntry.action.startswith("user."), ~AuditEntry.action.startswith("token."))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        presence={"unifi_webhook_secret": SECRET, "ttl_seconds": 900},
        _env_file=None,
    )


@pytest.fixture
def clock(container: bootstrap.Container) -> list[datetime]:
    """The app's clock, as a one-item list a test can move."""
    now = [NOW]
    container.clock = lambda: now[0]
    return now


@pytest.fixture
def laser(database: Database, operator: Person) -> UUID:
    """A high-hazard zone behind one UniFi door, and Olivia's UniFi id."""
    with database.unit_of_work() as session:
        zone = Zone(name="laser-room", hazard_level=HazardLevel.HIGH, unifi_door_ids=[DOOR])
        session.add(zone)
        user = session.get(User, operator.user_id)
        assert user is not None
        user.unifi_user_id = BADGE
        session.flush()
        return zone.id


def door_event(
    *,
    event_id: str | None = "4a98adf6-dbb8-4312-9b8b-593f6eba8c8e",
    door: str = DOOR,
    actor: str = BADGE,
    result: str = "ACCESS",
    event: str = "access.door.unlock",
) -> bytes:
    payload: dict[str, Any] = {
        "event": event,
        "data": {
            "location": {"id": door, "location_type": "door", "name": "Laser room"},
            "actor": {"id": actor, "name": "Olivia Operator", "type": "user"},
            "object": {"authentication_type": "NFC", "result": result},
        },
    }
    if event_id is not None:
        payload["event_object_id"] = event_id
    return json.dumps(payload).encode()


def deliver(
    client: TestClient,
    body: bytes,
    *,
    at: datetime = NOW,
    secret: str = SECRET,
    signature: str | None = None,
) -> Any:
    t = int(at.timestamp())
    value = signature if signature is not None else f"t={t},v1={sign(secret.encode(), t, body)}"
    headers = {"Content-Type": "application/json", "Signature": value}
    return client.post(URL, content=body, headers=headers)


def rows(database: Database) -> list[ZonePresence]:
    with database.unit_of_work() as session:
        return list(session.scalars(select(ZonePresence)))


def audit_actions(database: Database) -> list[tuple[str, str | None, str | None]]:
    with database.unit_of_work() as session:
        return [
            (e.action, e.subject_type, e.subject_id)
            for e in session.scalars(
                select(AuditEntry).where(*NOT_FIXTURES).order_by(AuditEntry.seq)
            )
        ]


def is_present(database: Database, user: UUID, zone: UUID, at: datetime) -> bool:
    with database.unit_of_work() as session:
        return presence.user_is_present(session, user, zone, at, timedelta(seconds=900))


def test_signed_door_access_checks_the_person_in_and_is_audited(
    client: TestClient, database: Database, operator: Person, laser: UUID, clock: list[datetime]
) -> None:
    response = deliver(client, door_event())

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["outcome"] == "recorded" and body["recorded"] is True
    assert body["zoneId"] == str(laser) and body["userId"] == str(operator.user_id)
    [row] = rows(database)
    assert (row.source, row.status, row.observed_at) == (
        PresenceSource.UNIFI,
        PresenceStatus.PRESENT,
        NOW,
    )
    assert is_present(database, operator.user_id, laser, NOW + timedelta(minutes=1))
    occupancy = client.get(f"/api/zones/{laser}/occupancy", headers=operator.headers).json()
    assert occupancy["presentUserIds"] == [str(operator.user_id)]
    assert audit_actions(database) == [
        ("presence.recorded", "unifi_event", "4a98adf6-dbb8-4312-9b8b-593f6eba8c8e")
    ]
    with database.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(*NOT_FIXTURES)).one()
        assert entry.details["source"] == "unifi" and entry.details["door_id"] == DOOR
        assert SECRET not in json.dumps(entry.details)
        assert audit.verify_chain(session).intact


def test_presence_from_a_badge_expires_after_the_ttl(
    client: TestClient, database: Database, operator: Person, laser: UUID, clock: list[datetime]
) -> None:
    assert deliver(client, door_event()).status_code == 201
    assert is_present(database, operator.user_id, laser, NOW + timedelta(seconds=900))
    assert not is_present(database, operator.user_id, laser, NOW + timedelta(seconds=901))
    clock[0] = NOW + timedelta(minutes=20)
    occupancy = client.get(f"/api/zones/{laser}/occupancy", headers=operator.headers).json()
    assert occupancy["presentUserIds"] == []


def test_a_redelivered_event_is_recorded_once(
    client: TestClient, database: Database, laser: UUID, clock: list[datetime]
) -> None:
    assert deliver(client, door_event()).status_code == 201
    again = deliver(client, door_event(), at=NOW + timedelta(seconds=30))
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert len(rows(database)) == 1
    assert len(audit_actions(database)) == 1


def test_events_without_an_id_are_each_recorded(
    client: TestClient, database: Database, laser: UUID, clock: list[datetime]
) -> None:
    for _ in range(2):
        assert deliver(client, door_event(event_id=None)).status_code == 201
    assert len(rows(database)) == 2
    assert [a[1] for a in audit_actions(database)] == ["zone_presence", "zone_presence"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"body": b'{"event":"access.door.unlock","data":{"actor":{"id":"someone-else"}}}'},
         "signature_mismatch"),
        ({"secret": "guessed-secret"}, "signature_mismatch"),
        ({"signature": "sha256=deadbeef"}, "signature_malformed"),
        ({"at": NOW - timedelta(minutes=6)}, "timestamp_too_old"),
        ({"at": NOW + timedelta(minutes=6)}, "timestamp_in_future"),
    ],
)  # fmt: skip
def test_forged_or_replayed_deliveries_are_refused_and_record_nothing(
    client: TestClient,
    database: Database,
    laser: UUID,
    clock: list[datetime],
    changes: dict[str, Any],
    reason: str,
) -> None:
    body = door_event()
    if "body" in changes:
        # Signed for the genuine body, delivered with another: a tampered delivery.
        t = int(NOW.timestamp())
        signature = f"t={t},v1={sign(SECRET.encode(), t, body)}"
        response = deliver(client, changes["body"], signature=signature)
    else:
        response = deliver(client, body, **changes)

    assert response.status_code == 401
    problem = response.json()
    assert problem["errors"][0]["reason"] == reason
    assert problem["field"] == "Signature"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert rows(database) == []
    assert audit_actions(database) == []


def test_a_delivery_without_a_signature_header_is_refused(
    client: TestClient, database: Database, laser: UUID, clock: list[datetime]
) -> None:
    response = client.post(URL, content=door_event(), headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.json()["errors"][0]["reason"] == "signature_missing"
    assert rows(database) == []


def test_a_bearer_token_is_no_substitute_for_the_signature(
    client: TestClient, database: Database, admin: Person, laser: UUID, clock: list[datetime]
) -> None:
    response = client.post(URL, content=door_event(), headers=admin.headers)
    assert response.status_code == 401
    assert rows(database) == []


def test_without_a_configured_secret_every_delivery_is_refused(
    client: TestClient,
    container: bootstrap.Container,
    database: Database,
    laser: UUID,
    clock: list[datetime],
) -> None:
    container.settings.presence.unifi_webhook_secret = None
    response = deliver(client, door_event())
    assert response.status_code == 401
    problem = response.json()
    assert problem["errors"][0]["reason"] == "secret_not_configured"
    assert "KITTYLAB_PRESENCE__UNIFI_WEBHOOK_SECRET" in problem["detail"]
    container.settings.presence.unifi_webhook_secret = SecretStr("")
    assert deliver(client, door_event()).json()["errors"][0]["reason"] == "secret_not_configured"
    assert rows(database) == []


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        (door_event(door="front-door"), "unknown_door"),
        (door_event(actor="a-visitor"), "unknown_actor"),
        (door_event(result="BLOCKED"), "access_denied"),
        (door_event(event="access.doorbell.incoming"), "not_door_access"),
    ],
)
def test_verified_events_that_say_nothing_about_presence_are_accepted_and_ignored(
    client: TestClient,
    database: Database,
    laser: UUID,
    clock: list[datetime],
    event: bytes,
    outcome: str,
) -> None:
    response = deliver(client, event)
    assert response.status_code == 202
    body = response.json()
    assert (body["outcome"], body["recorded"]) == (outcome, False)
    assert body["reason"]
    assert rows(database) == []


def test_a_door_listed_by_two_zones_is_not_guessed_at(
    client: TestClient, database: Database, laser: UUID, clock: list[datetime]
) -> None:
    with database.unit_of_work() as session:
        session.add(Zone(name="corridor", hazard_level=HazardLevel.LOW, unifi_door_ids=[DOOR]))
    response = deliver(client, door_event())
    assert response.status_code == 202
    assert response.json()["outcome"] == "ambiguous_door"
    assert "corridor, laser-room" in response.json()["reason"]
    assert rows(database) == []


def test_a_deactivated_persons_badge_checks_nobody_in(
    client: TestClient, database: Database, operator: Person, laser: UUID, clock: list[datetime]
) -> None:
    with database.unit_of_work() as session:
        user = session.get(User, operator.user_id)
        assert user is not None
        user.active = False
    response = deliver(client, door_event())
    assert (response.status_code, response.json()["outcome"]) == (202, "inactive_user")
    assert rows(database) == []


def test_a_verified_body_that_is_not_json_is_a_422_naming_the_body(
    client: TestClient, database: Database, laser: UUID, clock: list[datetime]
) -> None:
    response = deliver(client, b"not json")
    assert response.status_code == 422
    assert response.json()["field"] == "body"


def test_manual_check_in_is_audited_with_who_recorded_it(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    clock: list[datetime],
) -> None:
    own = client.post("/api/presence", json={"zoneId": str(laser)}, headers=operator.headers)
    assert own.status_code == 201
    clock[0] = NOW + timedelta(seconds=1)
    other = client.post(
        "/api/presence",
        json={"zoneId": str(laser), "userId": str(operator.user_id), "status": "vacated"},
        headers=safety_lead.headers,
    )
    assert other.status_code == 201
    with database.unit_of_work() as session:
        entries = session.scalars(
            select(AuditEntry).where(*NOT_FIXTURES).order_by(AuditEntry.seq)
        ).all()
    assert [(e.action, e.actor_id, e.details["status"]) for e in entries] == [
        ("presence.recorded", operator.user_id, "present"),
        ("presence.recorded", safety_lead.user_id, "vacated"),
    ]
    assert all(e.details["source"] == "manual" for e in entries)
    assert not is_present(database, operator.user_id, laser, NOW + timedelta(seconds=2))


def test_safety_override_records_presence_an_approved_safety_event_and_an_audit_entry(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    clock: list[datetime],
) -> None:
    response = post_override(
        client, safety_lead, operator, laser, "present", "badge reader at the laser room is offline"
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["presence"]["source"] == "override"
    assert body["safetyEvent"]["eventType"] == "override"
    assert is_present(database, operator.user_id, laser, NOW)
    with database.unit_of_work() as session:
        event = session.scalars(select(SafetyEvent)).one()
        assert event.event_type is SafetyEventType.OVERRIDE
        assert event.status is SafetyStatus.APPROVED
        assert event.initiated_by == event.approved_by == safety_lead.user_id
        assert event.signature is None and event.resolved_at == NOW
        assert event.zone_id == laser
        assert event.reason == "badge reader at the laser room is offline"
        assert event.details["override"] == "presence"
        assert event.details["user_id"] == str(operator.user_id)
        assert event.details["status"] == "present"
        entry = session.scalars(select(AuditEntry).where(*NOT_FIXTURES)).one()
        assert (entry.action, entry.actor_id) == ("presence.override", safety_lead.user_id)
        assert entry.subject_id == str(event.id)


@pytest.mark.parametrize("who", ["operator", "admin"])
def test_only_the_safety_role_overrides_presence(
    client: TestClient,
    database: Database,
    who: str,
    request: pytest.FixtureRequest,
    laser: UUID,
    clock: list[datetime],
) -> None:
    person: Person = request.getfixturevalue(who)
    response = post_override(client, person, person, laser, "present", "trust me")
    assert response.status_code == 403
    with database.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(SafetyEvent)) == 0
        assert session.scalar(select(func.count()).select_from(ZonePresence)) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [({"reason": ""}, "reason"), ({"status": "gone"}, "status"), ({"zoneId": "x"}, "zoneId")],
)
def test_a_bad_override_names_the_field(
    client: TestClient,
    safety_lead: Person,
    operator: Person,
    laser: UUID,
    change: dict[str, str],
    field: str,
) -> None:
    body = {"zoneId": str(laser), "userId": str(operator.user_id), "status": "present"}
    body["reason"] = "reader down"
    body.update(change)
    response = client.post("/api/presence/override", json=body, headers=safety_lead.headers)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_an_override_for_an_unknown_zone_is_404(
    client: TestClient, safety_lead: Person, operator: Person, laser: UUID
) -> None:
    body = {
        "zoneId": "0190f000-0000-7000-8000-000000000000",
        "userId": str(operator.user_id),
        "status": "vacated",
        "reason": "left without badging out",
    }
    response = client.post("/api/presence/override", json=body, headers=safety_lead.headers)
    assert response.status_code == 404


# Issue 13, hole 7: presence you can trust.


@pytest.mark.parametrize(("who", "allowed"), [("admin", False), ("safety_lead", True)])
def test_recording_someone_elses_presence_needs_the_safety_role_as_the_override_does(
    client: TestClient,
    database: Database,
    operator: Person,
    who: str,
    allowed: bool,
    request: pytest.FixtureRequest,
    laser: UUID,
    clock: list[datetime],
) -> None:
    person: Person = request.getfixturevalue(who)
    body = {"zoneId": str(laser), "userId": str(operator.user_id)}
    response = client.post("/api/presence", json=body, headers=person.headers)
    if allowed:
        assert response.status_code == 201, response.text
        assert is_present(database, operator.user_id, laser, NOW)
    else:
        assert response.status_code == 403
        assert "safety" in response.json()["detail"]
        assert rows(database) == []


@pytest.mark.parametrize("who", ["operator", "admin", "safety_lead"])
def test_anyone_checks_themselves_in(
    client: TestClient,
    database: Database,
    who: str,
    request: pytest.FixtureRequest,
    laser: UUID,
    clock: list[datetime],
) -> None:
    person: Person = request.getfixturevalue(who)
    response = client.post("/api/presence", json={"zoneId": str(laser)}, headers=person.headers)
    assert response.status_code == 201, response.text
    assert is_present(database, person.user_id, laser, NOW)


@pytest.fixture
def workshop(database: Database) -> UUID:
    with database.unit_of_work() as session:
        zone = Zone(name="workshop", hazard_level=HazardLevel.MEDIUM)
        session.add(zone)
        session.flush()
        return zone.id


def test_a_check_in_ends_the_previous_one_a_person_is_in_one_zone_at_a_time(
    client: TestClient,
    database: Database,
    operator: Person,
    laser: UUID,
    workshop: UUID,
    clock: list[datetime],
) -> None:
    first = client.post("/api/presence", json={"zoneId": str(laser)}, headers=operator.headers)
    assert first.status_code == 201
    clock[0] = NOW + timedelta(seconds=0.01)
    second = client.post("/api/presence", json={"zoneId": str(workshop)}, headers=operator.headers)
    assert second.status_code == 201

    later = NOW + timedelta(seconds=1)
    assert is_present(database, operator.user_id, workshop, later)
    assert not is_present(database, operator.user_id, laser, later)
    with database.unit_of_work() as session:
        ended = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "presence.ended")
        ).one()
    assert ended.actor_id == operator.user_id
    assert ended.details["zone_id"] == str(laser)
    assert ended.details["status"] == "vacated"
    assert ended.details["ended_by_zone_id"] == str(workshop)


def test_a_badge_in_one_zone_ends_a_check_in_in_another(
    client: TestClient,
    database: Database,
    operator: Person,
    laser: UUID,
    workshop: UUID,
    clock: list[datetime],
) -> None:
    client.post("/api/presence", json={"zoneId": str(workshop)}, headers=operator.headers)
    clock[0] = NOW + timedelta(seconds=1)
    assert deliver(client, door_event(), at=clock[0]).status_code == 201
    later = NOW + timedelta(seconds=2)
    assert is_present(database, operator.user_id, laser, later)
    assert not is_present(database, operator.user_id, workshop, later)


def post_override(
    client: TestClient, by: Person, who: Person, zone: UUID, status: str, reason: str
) -> httpx.Response:
    """``POST /api/presence/override`` as ``by`` for ``who``; the response, unchecked."""
    return client.post(
        "/api/presence/override",
        json={"zoneId": str(zone), "userId": str(who.user_id), "status": status, "reason": reason},
        headers=by.headers,
    )


def vacate_by_override(client: TestClient, safety_lead: Person, who: Person, zone: UUID) -> None:
    response = post_override(client, safety_lead, who, zone, "vacated", "left by the fire exit")
    assert response.status_code == 201, response.text


def test_after_a_vacated_override_her_own_check_in_does_not_make_her_present_again(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    clock: list[datetime],
) -> None:
    vacate_by_override(client, safety_lead, operator, laser)
    clock[0] = NOW + timedelta(seconds=0.01)
    again = client.post("/api/presence", json={"zoneId": str(laser)}, headers=operator.headers)
    assert again.status_code == 409
    assert "override" in again.json()["detail"]
    # A check-out first does not clear the override either.
    out = client.post(
        "/api/presence",
        json={"zoneId": str(laser), "status": "vacated"},
        headers=operator.headers,
    )
    assert out.status_code == 201
    clock[0] = NOW + timedelta(seconds=0.02)
    again = client.post("/api/presence", json={"zoneId": str(laser)}, headers=operator.headers)
    assert again.status_code == 409
    assert not is_present(database, operator.user_id, laser, NOW + timedelta(seconds=1))


def test_after_a_vacated_override_a_badge_makes_her_present_again(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    clock: list[datetime],
) -> None:
    vacate_by_override(client, safety_lead, operator, laser)
    clock[0] = NOW + timedelta(seconds=30)
    assert deliver(client, door_event(), at=clock[0]).status_code == 201
    assert is_present(database, operator.user_id, laser, clock[0])
    # Seen by the badge, the override no longer stands: her check-out and check-in work.
    client.post(
        "/api/presence", json={"zoneId": str(laser), "status": "vacated"}, headers=operator.headers
    )
    clock[0] = NOW + timedelta(seconds=31)
    again = client.post("/api/presence", json={"zoneId": str(laser)}, headers=operator.headers)
    assert again.status_code == 201, again.text


def test_a_vacated_override_in_one_zone_does_not_block_a_check_in_elsewhere(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    workshop: UUID,
    clock: list[datetime],
) -> None:
    vacate_by_override(client, safety_lead, operator, laser)
    response = client.post(
        "/api/presence", json={"zoneId": str(workshop)}, headers=operator.headers
    )
    assert response.status_code == 201


def test_presence_history_is_the_persons_own_unless_safety_or_admin_but_who_is_in_is_public(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    admin: Person,
    laser: UUID,
    clock: list[datetime],
) -> None:
    for person in (operator, safety_lead):
        r = client.post("/api/presence", json={"zoneId": str(laser)}, headers=person.headers)
        assert r.status_code == 201

    own = client.get("/api/presence", headers=operator.headers).json()["items"]
    assert {item["userId"] for item in own} == {str(operator.user_id)}
    other = client.get(
        "/api/presence", params={"userId": str(safety_lead.user_id)}, headers=operator.headers
    )
    assert other.status_code == 403
    assert "safety or admin" in other.json()["detail"]
    for person in (safety_lead, admin):
        items = client.get("/api/presence", headers=person.headers).json()["items"]
        assert {item["userId"] for item in items} == {
            str(operator.user_id),
            str(safety_lead.user_id),
        }

    occupancy = client.get(f"/api/zones/{laser}/occupancy", headers=operator.headers)
    assert occupancy.status_code == 200
    assert set(occupancy.json()["presentUserIds"]) == {
        str(operator.user_id),
        str(safety_lead.user_id),
    }


def test_an_override_into_one_zone_ends_the_other_without_standing_against_her_there(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    workshop: UUID,
    clock: list[datetime],
) -> None:
    client.post("/api/presence", json={"zoneId": str(laser)}, headers=operator.headers)
    clock[0] = NOW + timedelta(seconds=1)
    moved = post_override(
        client, safety_lead, operator, workshop, "present", "workshop reader offline"
    )
    assert moved.status_code == 201
    assert not is_present(database, operator.user_id, laser, clock[0])
    clock[0] = NOW + timedelta(seconds=2)
    back = client.post("/api/presence", json={"zoneId": str(laser)}, headers=operator.headers)
    assert back.status_code == 201, back.text
