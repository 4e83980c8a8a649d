"""Telemetry, conversations, routing decisions, safety events and presence through the API,
with the database's own guards behind them."""

from __future__ import annotations

import asyncio
import json
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    CADArtifact,
    CADJob,
    Device,
    FabricationJob,
    PrintMonitorEvent,
    RoutingDecision,
    SafetyEvent,
    Zone,
)
from kittylab.domain.bus_acl import IdentityKind
from kittylab.domain.enums import (
    ArtifactType,
    CADPolicyMode,
    CADProvider,
    DeviceKind,
    HazardLevel,
    MonitorEventType,
    SafetyEventType,
    Tier,
)
from tests.integration.conftest import Person
from tests.integration.live_bus import (
    FAST,
    as_identity,
    embedded_broker,
    eventually,
    free_port,
    running_bus,
)


@pytest.fixture
def lab(database: Database) -> dict[str, UUID]:
    with database.unit_of_work() as s:
        zone = Zone(name="welding-bay", hazard_level=HazardLevel.HIGH, requires_ppe=True)
        s.add(zone)
        s.flush()
        device = Device(
            external_id="fume-sensor",
            integration="simulated",
            display_name="Fume sensor",
            kind=DeviceKind.SENSOR,
            zone_id=zone.id,
            capabilities={"sensor_read": {"type": "object"}},
        )
        s.add(device)
        s.flush()
        return {"zone": zone.id, "device": device.id}


def test_telemetry_batch_is_stored_and_marks_the_device_online(
    client: TestClient, operator: Person, lab: dict[str, UUID]
) -> None:
    batch = {
        "events": [
            {"deviceId": str(lab["device"]), "topic": "air/voc", "payload": {"ppm": 3.2}},
            {"externalId": "fume-sensor", "topic": "air/voc", "payload": [1, 2, 3]},
        ]
    }
    response = client.post("/api/telemetry", json=batch, headers=operator.headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2}
    stored = client.get(
        f"/api/telemetry?deviceId={lab['device']}&topic=air/voc", headers=operator.headers
    )
    assert sorted(str(e["payload"]) for e in stored.json()["items"]) == [
        "[1, 2, 3]",
        "{'ppm': 3.2}",
    ]
    device = client.get(f"/api/devices/{lab['device']}", headers=operator.headers).json()
    assert device["onlineState"] == "online" and device["lastSeen"] is not None


def test_telemetry_over_64_kib_is_413_and_counted(
    client: TestClient, operator: Person, lab: dict[str, UUID]
) -> None:
    before = _metric(client, 'kittylab_telemetry_events_total{outcome="rejected_too_large"}')
    batch = {
        "events": [
            {"deviceId": str(lab["device"]), "topic": "ok", "payload": {"v": 1}},
            {"deviceId": str(lab["device"]), "topic": "big", "payload": {"blob": "x" * 70_000}},
        ]
    }
    response = client.post("/api/telemetry", json=batch, headers=operator.headers)
    assert response.status_code == 413
    assert response.json()["field"] == "events.1.payload"
    assert (
        _metric(client, 'kittylab_telemetry_events_total{outcome="rejected_too_large"}')
        == before + 1
    )
    # Nothing from the refused batch was stored.
    assert client.get("/api/telemetry", headers=operator.headers).json()["items"] == []


def test_telemetry_for_unknown_device_names_the_event(client: TestClient, operator: Person) -> None:
    batch = {"events": [{"externalId": "ghost", "topic": "t", "payload": 1}]}
    response = client.post("/api/telemetry", json=batch, headers=operator.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "events.0.externalId"


def test_deleting_a_conversation_keeps_its_routing_decisions(
    client: TestClient, operator: Person, database: Database
) -> None:
    conv = client.post(
        "/api/conversations", json={"contextKey": "wall-1"}, headers=operator.headers
    ).json()
    with database.unit_of_work() as s:
        s.add(
            RoutingDecision(
                conversation_id=UUID(conv["id"]),
                request_id=uuid4(),
                input_hash="h" * 64,
                selected_tier=Tier.LOCAL,
                confidence=0.93,
                latency_ms=4,
                performed_by=operator.user_id,
            )
        )
    assert (
        client.delete(f"/api/conversations/{conv['id']}", headers=operator.headers).status_code
        == 204
    )
    decisions = client.get(
        f"/api/routing/decisions?conversationId={conv['id']}", headers=operator.headers
    )
    [decision] = decisions.json()["items"]
    assert decision["costEstimate"] == "0.000000"  # recorded as zero, never null
    assert decision["confidence"] == 0.93


def test_routing_decisions_are_append_only(database: Database, operator: Person) -> None:
    with database.unit_of_work() as s:
        s.add(
            RoutingDecision(
                request_id=uuid4(),
                input_hash="h",
                selected_tier=Tier.MCP,
                confidence=0.5,
                latency_ms=80,
            )
        )
    for statement in (
        "UPDATE routing_decisions SET confidence = 1",
        "DELETE FROM routing_decisions",
    ):
        with pytest.raises(IntegrityError, match="append-only"), database.unit_of_work() as s:
            s.execute(text(statement))


def test_database_refuses_out_of_range_confidence(database: Database) -> None:
    with pytest.raises(IntegrityError, match="confidence_range"), database.unit_of_work() as s:
        s.add(
            RoutingDecision(
                request_id=uuid4(),
                input_hash="h",
                selected_tier=Tier.LOCAL,
                confidence=1.5,
                latency_ms=1,
            )
        )


def test_database_requires_artifact_metadata_and_unique_keys(
    database: Database, operator: Person
) -> None:
    with database.unit_of_work() as s:
        job = CADJob(prompt="plate", policy_mode=CADPolicyMode.OFFLINE)
        s.add(job)
        s.flush()
        job_id = job.id
        good = {
            "bounding_box": {"x": 1, "y": 1, "z": 1},
            "material_hints": [],
            "generation_params": {},
        }
        s.add(
            CADArtifact(
                cad_job_id=job_id,
                provider=CADProvider.CADQUERY,
                artifact_key="a/plate.step",
                artifact_type=ArtifactType.STEP,
                metadata_=good,
                quality_score=0.9,
            )
        )
    with (
        pytest.raises(IntegrityError, match="metadata_required_keys"),
        database.unit_of_work() as s,
    ):
        s.add(
            CADArtifact(
                cad_job_id=job_id,
                provider=CADProvider.CADQUERY,
                artifact_key="a/x.stl",
                artifact_type=ArtifactType.STL,
                metadata_={"bounding_box": {}},
            )
        )
    with pytest.raises(IntegrityError, match="artifact_key"), database.unit_of_work() as s:
        s.add(
            CADArtifact(
                cad_job_id=job_id,
                provider=CADProvider.ZOO,
                artifact_key="a/plate.step",
                artifact_type=ArtifactType.STEP,
                metadata_=good,
            )
        )


def test_database_requires_snapshot_for_failure_events(
    database: Database, operator: Person, lab: dict[str, UUID]
) -> None:
    with database.unit_of_work() as s:
        job = FabricationJob(
            device_id=lab["device"], gcode_path="s3://g/x.gcode", requested_by=operator.user_id
        )
        s.add(job)
        s.flush()
        job_id = job.id
    with (
        pytest.raises(IntegrityError, match="failure_needs_snapshot"),
        database.unit_of_work() as s,
    ):
        s.add(
            PrintMonitorEvent(
                fabrication_job_id=job_id, event_type=MonitorEventType.NOZZLE_CLOG, confidence=0.7
            )
        )


def test_duplicate_external_id_within_an_integration_is_refused(
    database: Database, lab: dict[str, UUID]
) -> None:
    def add(integration: str) -> None:
        with database.unit_of_work() as s:
            s.add(
                Device(
                    external_id="fume-sensor",
                    integration=integration,
                    display_name="x",
                    kind=DeviceKind.SENSOR,
                    zone_id=lab["zone"],
                )
            )

    add("home_assistant")  # same id, other integration: fine
    with pytest.raises(IntegrityError, match="uq_devices_integration_external_id"):
        add("simulated")


def test_denying_a_decided_safety_event_is_409_naming_both_states(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    lab: dict[str, UUID],
) -> None:
    with database.unit_of_work() as s:
        event = SafetyEvent(
            event_type=SafetyEventType.UNLOCK, zone_id=lab["zone"], initiated_by=operator.user_id
        )
        s.add(event)
        s.flush()
        event_id = event.id
    url = f"/api/safety/events/{event_id}/deny"
    assert client.post(url, json={"reason": "no"}, headers=operator.headers).status_code == 403
    first = client.post(url, json={"reason": "nobody on site"}, headers=safety_lead.headers)
    assert first.status_code == 200
    assert first.json()["status"] == "denied" and first.json()["resolvedAt"]
    second = client.post(url, json={"reason": "again"}, headers=safety_lead.headers)
    assert second.status_code == 409
    assert second.json()["detail"] == "safety event is denied; it cannot move to denied"


def test_approved_safety_event_without_approver_is_refused_by_the_database(
    database: Database, operator: Person
) -> None:
    with (
        pytest.raises(IntegrityError, match="approved_needs_approver"),
        database.unit_of_work() as s,
    ):
        s.execute(
            text(
                "INSERT INTO safety_events (id, event_type, initiated_by, status) "
                f"VALUES (gen_random_uuid(), 'unlock', '{operator.user_id}', 'approved')"
            )
        )


def test_presence_check_in_counts_until_check_out(
    client: TestClient, operator: Person, safety_lead: Person, lab: dict[str, UUID]
) -> None:
    zone = str(lab["zone"])
    assert (
        client.post("/api/presence", json={"zoneId": zone}, headers=operator.headers).status_code
        == 201
    )
    occupancy = client.get(f"/api/zones/{zone}/occupancy", headers=operator.headers).json()
    assert occupancy["presentUserIds"] == [str(operator.user_id)]
    other = {"zoneId": zone, "userId": str(safety_lead.user_id)}
    assert client.post("/api/presence", json=other, headers=operator.headers).status_code == 403
    client.post(
        "/api/presence", json={"zoneId": zone, "status": "vacated"}, headers=operator.headers
    )
    assert (
        client.get(f"/api/zones/{zone}/occupancy", headers=operator.headers).json()[
            "presentUserIds"
        ]
        == []
    )


def test_nul_characters_are_refused_not_crashing(client: TestClient, admin: Person) -> None:
    response = client.post(
        "/api/conversations", json={"contextKey": "a\u0000b"}, headers=admin.headers
    )
    assert response.status_code == 422


def _metric(client: TestClient, sample: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def test_devices_are_found_by_alias_or_external_id(
    client: TestClient, operator: Person, database: Database, lab: dict[str, UUID]
) -> None:
    with database.unit_of_work() as s:
        device = s.get(Device, lab["device"])
        assert device is not None
        device.aliases = ["fume extractor sensor"]
    by_alias = client.get("/api/devices?name=fume extractor sensor", headers=operator.headers)
    assert [d["externalId"] for d in by_alias.json()["items"]] == ["fume-sensor"]
    by_id = client.get("/api/devices?name=fume-sensor&kind=sensor", headers=operator.headers)
    assert len(by_id.json()["items"]) == 1
    assert client.get("/api/devices?name=nothing", headers=operator.headers).json()["items"] == []


def test_telemetry_timestamps_must_be_zoned_and_recent(
    client: TestClient, operator: Person, lab: dict[str, UUID]
) -> None:
    def post(recorded_at: str):  # type: ignore[no-untyped-def]
        event = {
            "deviceId": str(lab["device"]),
            "topic": "t",
            "payload": 1,
            "recordedAt": recorded_at,
        }
        return client.post("/api/telemetry", json={"events": [event]}, headers=operator.headers)

    assert post("2026-11-27T10:00:00").status_code == 422  # no timezone
    for far in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2001-01-01T00:00:00Z"):
        response = post(far)
        assert response.status_code == 422, far
        assert response.json()["field"] == "events.0.recordedAt"


def test_unstorable_payload_text_is_422(
    client: TestClient, operator: Person, lab: dict[str, UUID]
) -> None:
    device = str(lab["device"])
    body = '{"events": [{"deviceId": "' + device + '", "topic": "t", "payload": {"s": "\\ud800"}}]}'
    response = client.post(
        "/api/telemetry",
        content=body.encode(),
        headers={**operator.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "events.0.payload"


def test_shared_external_id_needs_the_integration(
    client: TestClient, operator: Person, database: Database, lab: dict[str, UUID]
) -> None:
    with database.unit_of_work() as s:
        s.add(
            Device(
                external_id="fume-sensor",
                integration="home_assistant",
                display_name="x",
                kind=DeviceKind.SENSOR,
                zone_id=lab["zone"],
            )
        )
    event = {"externalId": "fume-sensor", "topic": "voc", "payload": 1}
    ambiguous = client.post("/api/telemetry", json={"events": [event]}, headers=operator.headers)
    assert ambiguous.status_code == 422
    assert ambiguous.json()["field"] == "events.0.integration"
    named = {**event, "integration": "simulated"}
    assert (
        client.post(
            "/api/telemetry", json={"events": [named]}, headers=operator.headers
        ).status_code
        == 202
    )
    stored = client.get(f"/api/telemetry?deviceId={lab['device']}", headers=operator.headers).json()
    assert len(stored["items"]) == 1


def test_only_integrations_write_device_state(
    client: TestClient, operator: Person, admin: Person, lab: dict[str, UUID]
) -> None:
    event = {"deviceId": str(lab["device"]), "topic": "state", "payload": {"locked": False}}
    assert (
        client.post(
            "/api/telemetry", json={"events": [event]}, headers=operator.headers
        ).status_code
        == 403
    )
    assert (
        client.post("/api/telemetry", json={"events": [event]}, headers=admin.headers).status_code
        == 202
    )
    state = client.get(f"/api/devices/{lab['device']}/state", headers=operator.headers).json()
    assert state["state"] == {"locked": False}


def test_only_participants_or_admin_delete_a_conversation(
    client: TestClient, operator: Person, safety_lead: Person, admin: Person
) -> None:
    conv = client.post("/api/conversations", json={}, headers=operator.headers).json()
    url = f"/api/conversations/{conv['id']}"
    assert client.delete(url, headers=safety_lead.headers).status_code == 403
    assert client.delete(url, headers=admin.headers).status_code == 204


def test_deeply_nested_telemetry_is_refused_before_it_can_break_listings(
    client: TestClient, operator: Person, lab: dict[str, UUID]
) -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    event = {"deviceId": str(lab["device"]), "topic": "t", "payload": deep}
    response = client.post("/api/telemetry", json={"events": [event]}, headers=operator.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "events.0.payload"
    assert client.get("/api/telemetry", headers=operator.headers).status_code == 200


def test_telemetry_pages_stop_at_a_byte_budget(
    client: TestClient, admin: Person, lab: dict[str, UUID]
) -> None:
    big = {"blob": "x" * 60_000}
    for _ in range(6):  # 10 per request keeps each body under the 1 MiB limit
        batch = {"events": [{"deviceId": str(lab["device"]), "topic": "big", "payload": big}] * 10}
        assert client.post("/api/telemetry", json=batch, headers=admin.headers).status_code == 202
    page = client.get("/api/telemetry?limit=100", headers=admin.headers).json()
    assert 30 <= len(page["items"]) < 60  # about 2 MiB of 60 kB payloads
    assert page["nextCursor"] is not None
    rest = client.get(
        f"/api/telemetry?limit=100&cursor={page['nextCursor']}", headers=admin.headers
    )
    assert len(page["items"]) + len(rest.json()["items"]) == 60


def test_reports_do_not_clear_a_fault_or_reach_retired_devices(
    client: TestClient, admin: Person, database: Database, lab: dict[str, UUID]
) -> None:
    from kittylab.domain.enums import OnlineState

    with database.unit_of_work() as s:
        device = s.get(Device, lab["device"])
        assert device is not None
        device.online_state = OnlineState.FAULT
    event = {"deviceId": str(lab["device"]), "topic": "air/voc", "payload": 1}
    assert (
        client.post("/api/telemetry", json={"events": [event]}, headers=admin.headers).status_code
        == 202
    )
    state = client.get(f"/api/devices/{lab['device']}", headers=admin.headers).json()
    assert state["onlineState"] == "fault" and state["lastSeen"] is not None
    with database.unit_of_work() as s:
        device = s.get(Device, lab["device"])
        assert device is not None
        device.retired_at = device.last_seen
    refused = client.post("/api/telemetry", json={"events": [event]}, headers=admin.headers)
    assert refused.status_code == 422


def test_the_state_topic_is_guarded_whatever_its_spelling(
    client: TestClient, operator: Person, lab: dict[str, UUID]
) -> None:
    for topic in ("State", " state ", "STATE"):
        event = {"deviceId": str(lab["device"]), "topic": topic, "payload": {"locked": False}}
        response = client.post("/api/telemetry", json={"events": [event]}, headers=operator.headers)
        assert response.status_code == 403, topic


def test_people_read_their_own_safety_events_decisions_and_conversations(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    admin: Person,
    lab: dict[str, UUID],
) -> None:
    with database.unit_of_work() as s:
        mine = SafetyEvent(
            event_type=SafetyEventType.UNLOCK, zone_id=lab["zone"], initiated_by=operator.user_id
        )
        theirs = SafetyEvent(
            event_type=SafetyEventType.UNLOCK, zone_id=lab["zone"], initiated_by=admin.user_id
        )
        s.add_all([mine, theirs])
        for who in (operator.user_id, admin.user_id):
            s.add(
                RoutingDecision(
                    request_id=uuid4(),
                    input_hash="h",
                    selected_tier=Tier.LOCAL,
                    confidence=0.9,
                    latency_ms=3,
                    performed_by=who,
                )
            )
        s.flush()
        mine_id, theirs_id = mine.id, theirs.id
    events = client.get("/api/safety/events", headers=operator.headers).json()["items"]
    assert [e["id"] for e in events] == [str(mine_id)]
    assert (
        client.get(f"/api/safety/events/{theirs_id}", headers=operator.headers).status_code == 403
    )
    assert len(client.get("/api/safety/events", headers=safety_lead.headers).json()["items"]) == 2
    decisions = client.get("/api/routing/decisions", headers=operator.headers).json()["items"]
    assert [d["performedBy"] for d in decisions] == [str(operator.user_id)]
    assert (
        len(client.get("/api/routing/decisions", headers=safety_lead.headers).json()["items"]) == 2
    )
    conv = client.post("/api/conversations", json={}, headers=admin.headers).json()
    assert (
        client.get(f"/api/conversations/{conv['id']}", headers=operator.headers).status_code == 403
    )
    assert client.get("/api/conversations", headers=operator.headers).json()["items"] == []
    assert (
        client.get(f"/api/conversations/{conv['id']}", headers=safety_lead.headers).status_code
        == 200
    )


def test_people_read_their_own_commands(
    client: TestClient,
    database: Database,
    operator: Person,
    safety_lead: Person,
    admin: Person,
    lab: dict[str, UUID],
) -> None:
    from kittylab.adapters.db.tables import DeviceCommand

    with database.unit_of_work() as s:
        theirs = DeviceCommand(
            device_id=lab["device"], intent="sensor_read", requested_by=admin.user_id
        )
        s.add(theirs)
        s.flush()
        theirs_id = theirs.id
    assert client.get("/api/commands", headers=operator.headers).json()["items"] == []
    assert client.get(f"/api/commands/{theirs_id}", headers=operator.headers).status_code == 403
    assert len(client.get("/api/commands", headers=safety_lead.headers).json()["items"]) == 1


def test_a_denial_is_published_on_the_safety_topic(
    client: TestClient,
    container: bootstrap.Container,
    database: Database,
    operator: Person,
    safety_lead: Person,
    lab: dict[str, UUID],
) -> None:
    port = free_port()
    address = BrokerAddress("127.0.0.1", port)
    container.bus = MqttBus(as_identity(address, IdentityKind.SERVICE), FAST, role="server")
    with database.unit_of_work() as s:
        event = SafetyEvent(
            event_type=SafetyEventType.UNLOCK, zone_id=lab["zone"], initiated_by=operator.user_id
        )
        s.add(event)
        s.flush()
        event_id = event.id
    url = f"/api/safety/events/{event_id}/deny"
    assert client.post(
        url, json={"reason": "no one on site"}, headers=safety_lead.headers
    ).is_success

    async def deliver() -> list[dict[str, object]]:
        seen: list[dict[str, object]] = []

        async def collect(_: str, payload: bytes) -> None:
            seen.append(json.loads(payload))

        assert container.bus is not None
        async with embedded_broker(port), running_bus(address, "dashboard") as dashboard:
            dashboard.subscribe(f"kitty/safety/{event_id}", collect)
            await asyncio.sleep(0.1)
            sender = asyncio.create_task(container.bus.run())
            await eventually(lambda: seen)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return seen

    [message] = asyncio.run(deliver())
    assert (message["eventId"], message["type"], message["status"]) == (
        str(event_id),
        "unlock",
        "denied",
    )
