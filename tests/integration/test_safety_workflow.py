"""The safety workflow, adversarially: hazardous commands wait for signed approvals, and
every way around that is refused with its reason while nothing is sent.

The demo lab's policies: cnc-room (medium) needs one safety approval; laser-room and
welding-bay (high) need two distinct approvers from safety or admin, the requester checked
in, and PPE confirmed with each approval.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from kittylab import bootstrap
from kittylab.adapters.bus.mqtt import BrokerAddress, MqttBus
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    AuditEntry,
    Device,
    DeviceCommand,
    DeviceLock,
    SafetyEvent,
    User,
    UserKey,
    Zone,
    ZonePresence,
)
from kittylab.adapters.detectors.snapshots import HttpSnapshotSource
from kittylab.devices import dispatch
from kittylab.domain.bus_acl import IdentityKind
from kittylab.domain.enums import CommandStatus, OnlineState, PresenceSource, PresenceStatus
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity
from kittylab.records import audit
from kittylab.safety import evidence, locks, workflow
from kittylab.safety.approval_payload import ApprovalPayload, arguments_digest
from kittylab.safety.signatures import parse_public_key
from tests.integration.live_bus import (
    FAST,
    as_identity,
    embedded_broker,
    eventually,
    free_port,
    running_bus,
)
from tests.peers.camera_peer import CameraPeer

MAX_DELAY = timedelta(seconds=60)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@dataclass
class Member:
    username: str
    user_id: UUID
    token: str
    key: Ed25519PrivateKey
    key_id: UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Lab:
    client: TestClient
    database: Database
    container: bootstrap.Container
    people: dict[str, Member]
    devices: dict[str, UUID]
    zones: dict[str, UUID]

    def request(self, who: str, device: str, intent: str = "power_on") -> dict[str, Any]:
        response = self.client.post(
            f"/api/device/{self.devices[device]}/command",
            json={"intent": intent},
            headers=self.people[who].headers,
        )
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        return body

    def event(self, event_id: str, who: str = "ada") -> dict[str, Any]:
        response = self.client.get(
            f"/api/safety/events/{event_id}", headers=self.people[who].headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def signed(
        self,
        who: str,
        event_id: str,
        *,
        nonce: str | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> dict[str, Any]:
        """An approval body: ``who`` signs the event's canonical payload."""
        event = self.event(event_id)
        nonce = nonce or secrets.token_urlsafe(24)
        payload = ApprovalPayload(
            event_id=UUID(event["id"]),
            intent=event["intent"],
            device_id=UUID(event["deviceId"]),
            zone_id=UUID(event["zoneId"]),
            initiator_id=UUID(event["initiatedBy"]),
            nonce=nonce,
            expires_at=datetime.fromisoformat(event["expiresAt"]),
            command_id=UUID(event["commandId"]) if event["commandId"] else None,
            arguments_digest=arguments_digest(event["payload"]) if event["commandId"] else None,
        ).canonical()
        signer = key or self.people[who].key
        return {
            "nonce": nonce,
            "signature": base64.b64encode(signer.sign(payload)).decode(),
            "signedPayload": payload.decode(),
            # The demo lab's CNC room, laser room and welding bay require PPE: every
            # approval there confirms some (a test that means otherwise says so).
            "ppe": ["safety_glasses"],
        }

    def approve(
        self, who: str, event_id: str, body: dict[str, Any] | None = None, **extra: Any
    ) -> tuple[int, dict[str, Any]]:
        body = {**(body or self.signed(who, event_id)), **extra}
        response = self.client.post(
            f"/api/safety/events/{event_id}/approve", json=body, headers=self.people[who].headers
        )
        return response.status_code, response.json()

    def check_in(self, who: str, zone: str, minutes_ago: float = 0) -> None:
        """``who`` badges in at the zone's door: a source that counts in every zone."""
        with self.database.unit_of_work() as s:
            s.add(
                ZonePresence(
                    zone_id=self.zones[zone],
                    user_id=self.people[who].user_id,
                    source=PresenceSource.UNIFI,
                    status=PresenceStatus.PRESENT,
                    observed_at=self.container.clock() - timedelta(minutes=minutes_ago),
                )
            )

    def self_check_in(self, who: str, zone: str, status: str = "present") -> None:
        """``who`` checks in (or out) by hand, through the API: from anywhere."""
        response = self.client.post(
            "/api/presence",
            json={"zoneId": str(self.zones[zone]), "status": status},
            headers=self.people[who].headers,
        )
        assert response.status_code == 201, response.text

    def command(self, command_id: str) -> DeviceCommand:
        with self.database.unit_of_work() as s:
            row = s.get(DeviceCommand, UUID(command_id))
            assert row is not None
            s.expunge(row)
            return row

    def claim(self, command_id: str) -> dispatch.Claim | None:
        return dispatch.claim(self.database, UUID(command_id), self.container.clock(), MAX_DELAY)

    def dispatch_jobs(self) -> list[str]:
        with self.database.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT args->>'command_id' FROM procrastinate_jobs "
                        "WHERE task_name = 'kittylab:dispatch_command'"
                    )
                ).scalars()
            )


def _register_key(database: Database, user_id: UUID) -> tuple[Ed25519PrivateKey, UUID]:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    public = parse_public_key("ed25519:" + base64.b64encode(raw).decode())
    with database.unit_of_work() as s:
        row = UserKey(user_id=user_id, name="test", public_key=public.text)
        s.add(row)
        s.flush()
        return key, row.id


@pytest.fixture
def lab(
    client: TestClient, container: bootstrap.Container, database: Database, demo_lab_path: Path
) -> Lab:
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
        for device in s.scalars(select(Device)):
            device.online_state = OnlineState.ONLINE
        devices = {d.external_id: d.id for d in s.scalars(select(Device))}
        zones = {z.name: z.id for z in s.scalars(select(Zone))}
        users = {u.username: u for u in s.scalars(select(User))}
        tokens = {name: identity.issue_token(s, user).token for name, user in users.items()}
        ids = {name: user.id for name, user in users.items()}
    people = {}
    for name in ("olivia", "sam", "sasha", "ada", "erin"):
        key, key_id = _register_key(database, ids[name])
        people[name] = Member(name, ids[name], tokens[name], key, key_id)
    return Lab(client, database, container, people, devices, zones)


# -- the workflow ---------------------------------------------------------------------------


def test_a_hazardous_command_waits_then_is_dispatched_exactly_once_when_approved(
    lab: Lab,
) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    assert asked["_status"] == 202, asked
    assert asked["status"] == "awaiting_confirmation"
    assert asked["missing"] == [
        "1 signed approval by safety",
        "PPE confirmed with the approval (cnc-room requires PPE)",
    ]
    event_id = asked["hazardEventId"]
    assert lab.command(asked["commandId"]).status is CommandStatus.PENDING
    assert lab.dispatch_jobs() == []  # nothing is on its way
    assert lab.claim(asked["commandId"]) is None  # and nothing can send it

    seen = lab.event(event_id, "olivia")
    assert seen["status"] == "pending" and seen["intent"] == "power_on"
    assert seen["eventType"] == "power_enable"
    assert seen["commandId"] == asked["commandId"]

    status, approved = lab.approve("sam", event_id)
    assert status == 200, approved
    assert approved["status"] == "approved"
    assert approved["approvedBy"] == str(lab.people["sam"].user_id)
    assert approved["missing"] == []
    assert lab.dispatch_jobs() == [asked["commandId"]]

    first = lab.claim(asked["commandId"])
    assert first is not None and first.newly_sent
    again = lab.claim(asked["commandId"])
    assert again is not None and not again.newly_sent  # confirmed, never re-sent
    assert lab.event(event_id)["resolvedAt"] is not None

    with lab.database.unit_of_work() as s:
        actions = list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
        assert audit.verify_chain(s).intact
    assert actions[-2:] == ["safety.requested", "safety.approved"]


def test_an_approval_in_a_zone_that_requires_ppe_must_confirm_some(lab: Lab) -> None:
    """The CNC room requires PPE, and its policy lists no items: before, an approval
    without any PPE confirmation counted there."""
    asked = lab.request("olivia", "cnc-spindle")
    assert asked["_status"] == 202, asked
    assert "PPE confirmed with the approval (cnc-room requires PPE)" in asked["missing"]

    status, refused = lab.approve("sam", asked["hazardEventId"], ppe=[])

    assert status == 403, refused
    assert "PPE not confirmed: cnc-room requires PPE" in refused["detail"]
    assert lab.event(asked["hazardEventId"])["status"] == "pending"
    status, approved = lab.approve("sam", asked["hazardEventId"], ppe=["face_shield"])
    assert status == 200 and approved["status"] == "approved", approved
    assert approved["approvals"][0]["ppe"] == ["face_shield"]


def test_a_high_hazard_unlock_needs_two_distinct_approvers_presence_and_ppe(lab: Lab) -> None:
    lab.check_in("olivia", "welding-bay")
    asked = lab.request("olivia", "welding-door", "door_unlock")
    assert asked["status"] == "awaiting_confirmation"
    event_id = asked["hazardEventId"]
    ppe = ["safety_glasses", "welding_helmet", "welding_gloves"]

    status, refused = lab.approve("sam", event_id, ppe=ppe[:2])
    assert status == 403 and "PPE not confirmed: welding_gloves" in refused["detail"]

    status, first = lab.approve("sam", event_id, ppe=ppe)
    assert status == 200, first
    assert first["status"] == "pending"
    assert first["missing"][0].startswith("1 signed approval by admin or safety")
    assert lab.claim(asked["commandId"]) is None

    status, second = lab.approve("ada", event_id, ppe=ppe)
    assert status == 200, second
    assert second["status"] == "approved"
    assert [a["approver"] for a in second["approvals"]] == ["Sam Safety", "Ada Admin"]
    assert second["approvals"][0]["ppe"] == sorted(ppe)
    claimed = lab.claim(asked["commandId"])
    assert claimed is not None and claimed.newly_sent


# -- the adversarial suite ------------------------------------------------------------------


def test_self_approval_is_refused(lab: Lab) -> None:
    asked = lab.request("sam", "cnc-spindle")
    status, body = lab.approve("sam", asked["hazardEventId"])
    assert status == 403
    assert "cannot approve their own request" in body["detail"]
    assert lab.event(asked["hazardEventId"])["status"] == "pending"


def test_the_same_person_cannot_approve_twice(lab: Lab) -> None:
    lab.check_in("olivia", "laser-room")
    asked = lab.request("olivia", "laser-power")
    ppe = {"ppe": ["laser_safety_glasses"]}
    assert lab.approve("sam", asked["hazardEventId"], **ppe)[0] == 200
    status, body = lab.approve("sam", asked["hazardEventId"], **ppe)
    assert status == 403
    assert "has already approved" in body["detail"]
    assert lab.event(asked["hazardEventId"])["status"] == "pending"
    assert lab.claim(asked["commandId"]) is None


def test_an_approver_without_the_role_is_refused(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    status, body = lab.approve("erin", asked["hazardEventId"])
    assert status == 403
    assert "needs the safety role" in body["detail"]


def test_a_replayed_signature_is_refused(lab: Lab) -> None:
    first = lab.request("olivia", "cnc-spindle")
    body = lab.signed("sam", first["hazardEventId"])
    assert lab.approve("sam", first["hazardEventId"], body)[0] == 200
    # The same signed approval presented again, on a new request for the same thing.
    second = lab.request("olivia", "cnc-door", "door_unlock")
    status, refused = lab.approve("sam", second["hazardEventId"], body)
    assert status == 403
    assert "nonce was already used" in refused["detail"]


def test_a_signature_made_for_another_event_is_refused(lab: Lab) -> None:
    one = lab.request("olivia", "cnc-spindle")
    other = lab.request("olivia", "cnc-door", "door_unlock")
    body = lab.signed("sam", one["hazardEventId"])
    status, refused = lab.approve("sam", other["hazardEventId"], body)
    assert status == 403
    assert f"made for event {one['hazardEventId']}" in refused["detail"]
    # Without the payload text the signature simply does not verify over this event.
    body.pop("signedPayload")
    status, refused = lab.approve("sam", other["hazardEventId"], body)
    assert status == 403
    assert "does not verify" in refused["detail"]
    assert lab.claim(other["commandId"]) is None


def test_a_tampered_payload_a_wrong_key_and_a_revoked_key_are_refused(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    event_id = asked["hazardEventId"]
    body = lab.signed("sam", event_id)
    tampered = {**body, "signedPayload": body["signedPayload"].replace("power_on", "power_of")}
    status, refused = lab.approve("sam", event_id, tampered)
    assert status == 403 and "tampered" in refused["detail"]

    stranger = Ed25519PrivateKey.generate()
    status, refused = lab.approve("sam", event_id, lab.signed("sam", event_id, key=stranger))
    assert status == 403 and "does not verify" in refused["detail"]

    someone_elses = {**lab.signed("sam", event_id), "keyId": str(lab.people["sasha"].key_id)}
    status, refused = lab.approve("sam", event_id, someone_elses)
    assert status == 403 and "belongs to another person" in refused["detail"]

    with lab.database.unit_of_work() as s:
        s.execute(
            update(UserKey)
            .where(UserKey.id == lab.people["sam"].key_id)
            .values(revoked_at=lab.container.clock())
        )
    status, refused = lab.approve(
        "sam", event_id, {**lab.signed("sam", event_id), "keyId": str(lab.people["sam"].key_id)}
    )
    assert status == 403 and "was revoked" in refused["detail"]
    status, refused = lab.approve("sam", event_id)
    assert status == 403 and "has no registered key" in refused["detail"]
    assert lab.event(event_id)["status"] == "pending"
    with lab.database.unit_of_work() as s:
        refusals = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "safety.approval_refused")
        ).all()
    assert len(refusals) == 5


def test_an_expired_event_is_denied_and_cannot_be_approved(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    event_id = asked["hazardEventId"]
    body = lab.signed("sam", event_id)
    with lab.database.unit_of_work() as s:
        s.execute(
            update(SafetyEvent)
            .where(SafetyEvent.id == UUID(event_id))
            .values(expires_at=lab.container.clock() - timedelta(seconds=1))
        )
    status, refused = lab.approve("sam", event_id, body)
    assert status == 409
    assert "expired" in refused["detail"]
    seen = lab.event(event_id)
    assert seen["status"] == "denied" and "expired" in seen["reason"]
    assert lab.command(asked["commandId"]).status is CommandStatus.FAILED
    assert lab.claim(asked["commandId"]) is None


def test_the_periodic_sweep_expires_forgotten_requests(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    later = lab.container.clock() + timedelta(hours=1)
    with lab.database.unit_of_work() as s:
        expired = workflow.expire_due(s, later, lab.container.settings.notify)
    assert expired == [UUID(asked["hazardEventId"])]
    assert lab.command(asked["commandId"]).status is CommandStatus.FAILED
    assert "expired" in (lab.command(asked["commandId"]).failure_reason or "")


def test_approval_after_denial_is_refused(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    event_id = asked["hazardEventId"]
    denied = lab.client.post(
        f"/api/safety/events/{event_id}/deny",
        json={"reason": "spindle guard is off"},
        headers=lab.people["sasha"].headers,
    )
    assert denied.status_code == 200, denied.text
    assert lab.command(asked["commandId"]).status is CommandStatus.FAILED
    status, refused = lab.approve("sam", event_id)
    assert status == 409
    assert "was denied (spindle guard is off)" in refused["detail"]
    assert lab.claim(asked["commandId"]) is None


def test_a_locked_out_device_refuses_the_request_and_its_approval(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    with lab.database.unit_of_work() as s:
        locks.place(
            s,
            lab.devices["cnc-spindle"],
            lab.people["sasha"].user_id,
            "changing the spindle belt",
            lab.container.clock(),
        )
    status, refused = lab.approve("sam", asked["hazardEventId"])
    assert status == 403
    assert "locked out by Sasha Safety" in refused["detail"]
    assert "changing the spindle belt" in refused["detail"]
    again = lab.request("olivia", "cnc-spindle")
    assert again["_status"] == 403
    assert "locked out" in again["detail"]
    # Switching it off is never refused, locked or not.
    assert lab.request("olivia", "cnc-spindle", "power_off")["_status"] == 202
    with lab.database.unit_of_work() as s:
        assert (
            s.scalar(select(AuditEntry.action).where(AuditEntry.action == "safety.refused"))
            == "safety.refused"
        )


def test_presence_older_than_the_ttl_does_not_count(lab: Lab) -> None:
    ttl_minutes = lab.container.settings.presence.ttl_seconds / 60
    lab.check_in("olivia", "laser-room", minutes_ago=ttl_minutes + 1)
    asked = lab.request("olivia", "laser-power")
    assert "the requester checked in to laser-room" in asked["missing"]
    status, refused = lab.approve("sam", asked["hazardEventId"], ppe=["laser_safety_glasses"])
    assert status == 403
    assert "the person who asked is not checked in to laser-room" in refused["detail"]
    lab.check_in("olivia", "laser-room")
    status, _ = lab.approve("sam", asked["hazardEventId"], ppe=["laser_safety_glasses"])
    assert status == 200


def test_two_approvals_racing_dispatch_exactly_once(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    event_id = asked["hazardEventId"]
    # One approval is needed; both safety officers sign and submit at the same moment.
    bodies = {who: lab.signed(who, event_id) for who in ("sam", "sasha")}
    results: dict[str, int] = {}
    barrier = threading.Barrier(len(bodies))

    def approve(who: str) -> None:
        barrier.wait()
        results[who] = lab.approve(who, event_id, bodies[who])[0]

    threads = [threading.Thread(target=approve, args=(who,)) for who in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [200, 409]
    claims = [lab.claim(asked["commandId"]) for _ in range(3)]
    assert [c.newly_sent for c in claims if c is not None] == [True, False, False]


def test_a_crash_between_approval_and_dispatch_sends_once_after_restart(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    assert lab.approve("sam", asked["hazardEventId"])[0] == 200
    # The dispatch job is lost (the worker died with it before it ran).
    with lab.database.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs"))
    later = lab.container.clock() + timedelta(seconds=40)
    assert UUID(asked["commandId"]) in dispatch.unfinished(lab.database, later)
    first = dispatch.claim(lab.database, UUID(asked["commandId"]), later, MAX_DELAY)
    assert first is not None and first.newly_sent
    second = dispatch.claim(lab.database, UUID(asked["commandId"]), later, MAX_DELAY)
    assert second is not None and not second.newly_sent


def test_commands_waiting_for_approval_are_not_reconciled(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    later = lab.container.clock() + timedelta(minutes=5)
    assert UUID(asked["commandId"]) not in dispatch.unfinished(lab.database, later)


def test_a_safe_action_goes_through_at_once_while_an_approval_is_pending(lab: Lab) -> None:
    lab.check_in("olivia", "laser-room")
    held = lab.request("olivia", "laser-door", "door_unlock")
    assert held["status"] == "awaiting_confirmation"
    for device, intent in (("laser-door", "door_lock"), ("laser-power", "power_off")):
        answer = lab.request("olivia", device, intent)
        assert answer["_status"] == 202, answer
        assert answer["status"] == "dispatched"
        assert answer["hazardEventId"] is None
        claimed = lab.claim(answer["commandId"])
        assert claimed is not None and claimed.newly_sent
    assert lab.claim(held["commandId"]) is None


def test_approvers_are_told_when_an_event_waits_and_the_initiator_when_it_is_decided(
    lab: Lab,
) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    with lab.database.unit_of_work() as s:
        rows = s.execute(
            text(
                "SELECT recipient, payload->>'title' FROM notifications "
                "WHERE related_safety_event_id = :e ORDER BY created_at"
            ),
            {"e": asked["hazardEventId"]},
        ).all()
    # The cnc-room policy names the safety role: its holders are told, nobody else.
    assert {r[0] for r in rows} == {"sam", "sasha"}
    assert all(r[1] == "Approval needed: power_on on cnc spindle" for r in rows)
    assert lab.approve("sam", asked["hazardEventId"])[0] == 200
    with lab.database.unit_of_work() as s:
        titles = (
            s.execute(
                text(
                    "SELECT payload->>'title' FROM notifications "
                    "WHERE related_safety_event_id = :e AND recipient = 'olivia'"
                ),
                {"e": asked["hazardEventId"]},
            )
            .scalars()
            .all()
        )
    assert titles == ["Request approved: power_on on cnc spindle"]


def test_bad_approval_input_is_422_naming_the_field(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    status, body = lab.approve("sam", asked["hazardEventId"], nonce="short")
    assert status == 422 and body["field"] == "nonce"
    status, body = lab.approve("sam", asked["hazardEventId"], signature="")
    assert status == 422 and body["field"] == "signature"
    status, body = lab.approve("sam", asked["hazardEventId"], signature="!!not base64!!")
    assert status == 403 and "signature" in body["detail"]


def test_a_held_command_and_its_approval_are_announced_on_the_bus(lab: Lab) -> None:
    port = free_port()
    address = BrokerAddress("127.0.0.1", port)
    lab.container.bus = MqttBus(as_identity(address, IdentityKind.SERVICE), FAST, role="server")
    asked = lab.request("olivia", "cnc-spindle")
    assert lab.approve("sam", asked["hazardEventId"])[0] == 200

    async def deliver() -> list[dict[str, object]]:
        seen: list[dict[str, object]] = []

        async def collect(_: str, payload: bytes) -> None:
            seen.append(json.loads(payload))

        assert lab.container.bus is not None
        async with embedded_broker(port), running_bus(address, "wall-terminal") as terminal:
            terminal.subscribe(f"kitty/safety/{asked['hazardEventId']}", collect)
            await asyncio.sleep(0.1)
            sender = asyncio.create_task(lab.container.bus.run())
            await eventually(lambda: len(seen) >= 2)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return seen

    messages = asyncio.run(deliver())
    assert [(m["status"], m["intent"]) for m in messages] == [
        ("pending", "power_on"),
        ("approved", "power_on"),
    ]


def test_a_command_held_through_the_conversation_is_announced_like_the_command_route_s(
    lab: Lab,
) -> None:
    # docs/integrations/mqtt.md: every held command is announced on kitty/safety/<eventId>,
    # whichever way it was asked for.
    port = free_port()
    address = BrokerAddress("127.0.0.1", port)
    c = lab.container
    # Not running: the outbox keeps what is published until the broker is up.
    c.bus = MqttBus(as_identity(address, IdentityKind.SERVICE), FAST, role="server")
    c.query = bootstrap.query_service(c.settings, lab.database, c.jobs, c.bus, c.cad)
    by_route = lab.request("olivia", "cnc-spindle")
    said = lab.client.post(
        "/api/query",
        json={"channel": "cli", "input": {"text": "unlock the welding bay door"}},
        headers=lab.people["olivia"].headers,
    )
    assert said.status_code == 202, said.text
    held = said.json()["pendingHazard"]

    async def deliver() -> dict[str, dict[str, object]]:
        seen: dict[str, dict[str, object]] = {}

        async def collect(topic: str, payload: bytes) -> None:
            seen[topic] = json.loads(payload)

        assert c.bus is not None
        async with embedded_broker(port), running_bus(address, "wall-terminal") as terminal:
            terminal.subscribe("kitty/safety/+", collect)
            await asyncio.sleep(0.1)
            sender = asyncio.create_task(c.bus.run())
            await eventually(lambda: len(seen) >= 2)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return seen

    messages = asyncio.run(deliver())
    from_route = messages[f"kitty/safety/{by_route['hazardEventId']}"]
    from_query = messages[f"kitty/safety/{held['eventId']}"]
    assert (from_query["status"], from_query["intent"]) == ("pending", "door_unlock")
    assert from_query["eventId"] == held["eventId"]
    assert from_query["deviceId"] == held["deviceId"]
    assert set(from_query) == set(from_route)


# -- a lock placed after approval stops the send (issue 13, hole 4) ------------------------


class RecordingDriver:
    """Stands in for the device's integration only to prove it is never reached."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, device: Any, intent: str, payload: Any) -> str | None:
        self.sent.append(intent)
        return None

    async def state(self, device: Any) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None


def _run_dispatch(lab: Lab, command_id: str) -> tuple[dispatch.Outcome, list[str]]:
    """Dispatch through a driver that records and never confirms: a sent command fails
    unconfirmed after a short window (these tests are about what happens around the send,
    and the default 30 s window would cost half a minute each)."""
    driver = RecordingDriver()
    settings = lab.container.settings.commands.model_copy(update={"ack_timeout_seconds": 0.3})
    outcome = asyncio.run(
        dispatch.dispatch(
            lab.database,
            {"simulated": driver},
            UUID(command_id),
            settings,
            lab.container.clock,
            notify=lab.container.settings.notify,
        )
    )
    return outcome, driver.sent


def test_a_lock_placed_between_approval_and_send_fails_the_command_and_tells_the_requester(
    lab: Lab,
) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    assert lab.approve("sam", asked["hazardEventId"])[0] == 200
    # The worker is backed up: before the dispatch job runs, Sasha locks the spindle.
    placed = lab.client.post(
        f"/api/devices/{lab.devices['cnc-spindle']}/locks",
        json={"reason": "changing the spindle belt"},
        headers=lab.people["sasha"].headers,
    )
    assert placed.status_code == 201, placed.text
    failed = lab.command(asked["commandId"])
    assert failed.status is CommandStatus.FAILED
    assert "locked out by Sasha Safety" in (failed.failure_reason or "")
    assert "changing the spindle belt" in (failed.failure_reason or "")
    outcome, sent = _run_dispatch(lab, asked["commandId"])
    assert sent == [] and outcome.status is None
    # The event keeps its decision as a record; a new request is needed.
    assert lab.event(asked["hazardEventId"])["status"] == "approved"
    with lab.database.unit_of_work() as s:
        titles = s.scalars(
            text(
                "SELECT payload->>'title' FROM notifications "
                "WHERE recipient = 'olivia' AND payload->>'title' LIKE '%locked%'"
            )
        ).all()
    assert titles == ["Not sent: power_on on cnc spindle (locked out)"]


def test_the_send_rechecks_locks_under_the_device_row_lock(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    assert lab.approve("sam", asked["hazardEventId"])[0] == 200
    # A lock row that appeared without ``place``'s follow-ups (a writer racing the claim):
    # the send is the last moment, and it reads the locks again.
    with lab.database.unit_of_work() as s:
        s.add(
            DeviceLock(
                device_id=lab.devices["cnc-spindle"],
                owner_id=lab.people["sasha"].user_id,
                reason="guard removed",
                placed_at=lab.container.clock(),
            )
        )
    outcome, sent = _run_dispatch(lab, asked["commandId"])
    assert sent == [] and outcome.status is None
    failed = lab.command(asked["commandId"])
    assert failed.status is CommandStatus.FAILED
    assert "locked out by Sasha Safety" in (failed.failure_reason or "")
    assert "guard removed" in (failed.failure_reason or "")


def test_the_send_refuses_a_device_retired_after_approval(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    assert lab.approve("sam", asked["hazardEventId"])[0] == 200
    with lab.database.unit_of_work() as s:
        s.execute(
            update(Device)
            .where(Device.id == lab.devices["cnc-spindle"])
            .values(retired_at=lab.container.clock())
        )
    outcome, sent = _run_dispatch(lab, asked["commandId"])
    assert sent == [] and outcome.status is None
    assert "retired" in (lab.command(asked["commandId"]).failure_reason or "")


def test_placing_a_lock_denies_a_pending_held_command(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    placed = lab.client.post(
        f"/api/devices/{lab.devices['cnc-spindle']}/locks",
        json={"reason": "changing the spindle belt"},
        headers=lab.people["sasha"].headers,
    )
    assert placed.status_code == 201, placed.text
    failed = lab.command(asked["commandId"])
    assert failed.status is CommandStatus.FAILED
    assert "locked out by Sasha Safety" in (failed.failure_reason or "")
    seen = lab.event(asked["hazardEventId"])
    assert seen["status"] == "denied" and "locked out" in seen["reason"]
    status, refused = lab.approve("sam", asked["hazardEventId"])
    assert status == 409 and "locked out" in refused["detail"]
    assert lab.claim(asked["commandId"]) is None


def test_the_send_refuses_an_approval_whose_event_expired_before_the_send(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    assert lab.approve("sam", asked["hazardEventId"])[0] == 200
    with lab.database.unit_of_work() as s:
        s.execute(
            update(SafetyEvent)
            .where(SafetyEvent.id == UUID(asked["hazardEventId"]))
            .values(expires_at=lab.container.clock() - timedelta(seconds=1))
        )
    outcome, sent = _run_dispatch(lab, asked["commandId"])
    assert sent == [] and outcome.status is None
    assert "expired" in (lab.command(asked["commandId"]).failure_reason or "")
    assert lab.event(asked["hazardEventId"])["status"] == "approved"  # kept as a record


def test_an_approval_waits_for_a_lock_being_placed_and_then_sees_it(lab: Lab) -> None:
    asked = lab.request("olivia", "cnc-spindle")
    body = lab.signed("sam", asked["hazardEventId"])
    results: list[tuple[int, dict[str, Any]]] = []
    approving = threading.Thread(
        target=lambda: results.append(lab.approve("sam", asked["hazardEventId"], body))
    )
    with lab.database.unit_of_work() as s:
        # Sasha's lock is placed (the device row is locked) but not yet committed.
        locks.place(
            s,
            lab.devices["cnc-spindle"],
            lab.people["sasha"].user_id,
            "changing the spindle belt",
            lab.container.clock(),
        )
        approving.start()
        approving.join(timeout=1.0)
        assert approving.is_alive(), results  # the approval waits for the device row
    approving.join(timeout=10)
    [(status, refused)] = results
    assert status == 403, refused
    assert "locked out by Sasha Safety" in refused["detail"]
    assert lab.command(asked["commandId"]).status is CommandStatus.PENDING


# -- presence you can trust, re-checked at the last moment (issue 13) ------------------------

LASER_PPE = ["laser_safety_glasses"]


def _approved_laser_power(lab: Lab) -> dict[str, Any]:
    """Olivia, badged in to the laser room, asks for the laser's power; Sam and Ada approve."""
    lab.check_in("olivia", "laser-room")
    asked = lab.request("olivia", "laser-power")
    assert asked["status"] == "awaiting_confirmation", asked
    for who in ("sam", "ada"):
        status, body = lab.approve(who, asked["hazardEventId"], ppe=LASER_PPE)
        assert status == 200, body
    assert lab.event(asked["hazardEventId"])["status"] == "approved"
    return asked


def _titles_for(lab: Lab, username: str, like: str) -> list[str]:
    with lab.database.unit_of_work() as s:
        return list(
            s.scalars(
                text(
                    "SELECT payload->>'title' FROM notifications "
                    "WHERE recipient = :who AND payload->>'title' LIKE :like"
                ),
                {"who": username, "like": like},
            ).all()
        )


def test_a_bare_self_check_in_does_not_count_as_presence_in_a_high_hazard_zone(
    lab: Lab,
) -> None:
    # From her desk, Olivia checks herself in to the laser room and asks for its power.
    lab.self_check_in("olivia", "laser-room")
    asked = lab.request("olivia", "laser-power")
    assert "the requester checked in to laser-room" in asked["missing"]
    status, refused = lab.approve("sam", asked["hazardEventId"], ppe=LASER_PPE)
    assert status == 403, refused
    assert "the person who asked is not checked in to laser-room" in refused["detail"]
    # Who is in the room still shows her; whose presence counts does not.
    occupancy = lab.client.get(
        f"/api/zones/{lab.zones['laser-room']}/occupancy", headers=lab.people["sam"].headers
    ).json()
    assert str(lab.people["olivia"].user_id) in occupancy["presentUserIds"]
    assert occupancy["countingUserIds"] == []
    assert occupancy["presenceSources"] == ["unifi", "override", "confirmed"]


def test_a_check_in_confirmed_by_someone_present_counts(lab: Lab) -> None:
    lab.self_check_in("olivia", "laser-room")
    confirm = {"zoneId": str(lab.zones["laser-room"]), "userId": str(lab.people["olivia"].user_id)}
    # Erin is not in the room: she cannot vouch for anyone there.
    refused = lab.client.post(
        "/api/presence/confirm", json=confirm, headers=lab.people["erin"].headers
    )
    assert refused.status_code == 403, refused.text
    assert "only someone present in laser-room" in refused.json()["detail"]
    # Nobody confirms themselves.
    own = lab.client.post(
        "/api/presence/confirm", json=confirm, headers=lab.people["olivia"].headers
    )
    assert own.status_code == 403
    # Sasha badged in; she sees Olivia there and confirms.
    lab.check_in("sasha", "laser-room")
    confirmed = lab.client.post(
        "/api/presence/confirm", json=confirm, headers=lab.people["sasha"].headers
    )
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["source"] == "confirmed"
    asked = lab.request("olivia", "laser-power")
    assert "the requester checked in to laser-room" not in asked["missing"]
    assert lab.approve("sam", asked["hazardEventId"], ppe=LASER_PPE)[0] == 200
    with lab.database.unit_of_work() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "presence.confirmed")).one()
        assert entry.actor_id == lab.people["sasha"].user_id


def test_a_confirmation_needs_the_persons_own_check_in(lab: Lab) -> None:
    lab.check_in("sasha", "laser-room")
    confirm = {"zoneId": str(lab.zones["laser-room"]), "userId": str(lab.people["olivia"].user_id)}
    response = lab.client.post(
        "/api/presence/confirm", json=confirm, headers=lab.people["sasha"].headers
    )
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "userId"


def test_the_send_fails_when_the_present_person_checked_out_after_approval(lab: Lab) -> None:
    asked = _approved_laser_power(lab)
    # Before the worker sends it, Olivia leaves the room and checks out.
    lab.self_check_in("olivia", "laser-room", "vacated")
    outcome, sent = _run_dispatch(lab, asked["commandId"])
    assert sent == [] and outcome.status is None
    failed = lab.command(asked["commandId"])
    assert failed.status is CommandStatus.FAILED
    assert "Olivia Operator is no longer present in laser-room" in (failed.failure_reason or "")
    assert lab.event(asked["hazardEventId"])["status"] == "approved"  # kept as a record
    assert _titles_for(lab, "olivia", "Not sent:%") == ["Not sent: power_on on laser cutter"]
    with lab.database.unit_of_work() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "safety.not_sent")).one()
        assert "no longer present" in entry.details["reason"]


def test_the_send_fails_when_the_device_moved_to_another_zone_after_approval(lab: Lab) -> None:
    asked = _approved_laser_power(lab)
    with lab.database.unit_of_work() as s:
        s.execute(
            update(Device)
            .where(Device.id == lab.devices["laser-power"])
            .values(zone_id=lab.zones["print-farm"])
        )
    outcome, sent = _run_dispatch(lab, asked["commandId"])
    assert sent == [] and outcome.status is None
    reason = lab.command(asked["commandId"]).failure_reason or ""
    assert "moved from laser-room to print-farm since it was approved" in reason
    assert _titles_for(lab, "olivia", "Not sent:%") == ["Not sent: power_on on laser cutter"]


def test_the_send_goes_ahead_while_the_present_person_is_still_there(lab: Lab) -> None:
    asked = _approved_laser_power(lab)
    claimed = lab.claim(asked["commandId"])
    assert claimed is not None and claimed.newly_sent


# -- camera bookmarks (issue 13) -----------------------------------------------------------


def _camera_in(lab: Lab, zone: str, snapshot_url: str | None) -> None:
    """The print farm's camera moved to ``zone``, declared with ``snapshot_url``."""
    with lab.database.unit_of_work() as s:
        camera = s.scalars(select(Device).where(Device.external_id == "farm-cam")).one()
        camera.zone_id = lab.zones[zone]
        camera.connection = {"snapshot_url": snapshot_url} if snapshot_url else {}


def _sent_and_bookmarked(lab: Lab) -> tuple[str, evidence.Bookmark | None, list[str]]:
    """An approved spindle start sent through dispatch, then its bookmark job's work."""
    asked = lab.request("olivia", "cnc-spindle")
    event_id = asked["hazardEventId"]
    assert lab.approve("sam", event_id)[0] == 200
    outcome, sent = _run_dispatch(lab, asked["commandId"])
    assert sent == ["power_on"]
    # The dispatch reports the sent event: its task defers the bookmark, after the send.
    assert outcome.sent_safety_event == UUID(event_id)
    kept = asyncio.run(
        evidence.bookmark(
            lab.database,
            lab.container.artifacts,
            HttpSnapshotSource(timeout=2),
            UUID(event_id),
            lab.container.clock,
        )
    )
    with lab.database.unit_of_work() as s:
        actions = list(
            s.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.subject_id == event_id)
                .order_by(AuditEntry.seq)
            )
        )
    return event_id, kept, actions


def test_a_sent_hazardous_command_keeps_the_zone_cameras_snapshot_as_its_evidence(
    lab: Lab,
) -> None:
    with CameraPeer() as camera:
        _camera_in(lab, "cnc-room", camera.serve("/still.png", PNG, "image/png"))
        event_id, kept, actions = _sent_and_bookmarked(lab)
    assert kept is not None and kept.evidence_key is not None
    key = kept.evidence_key
    assert key.startswith(f"safety/{event_id}/") and key.endswith(".png")
    assert lab.container.artifacts is not None
    assert b"".join(lab.container.artifacts.read_chunks(key)) == PNG
    assert lab.event(event_id)["evidenceKey"] == key
    with lab.database.unit_of_work() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "safety.evidence")).one()
        assert entry.details["evidence_key"] == key
        assert audit.verify_chain(s).intact
    assert actions[-1] == "safety.evidence"
    # A retried bookmark job changes nothing.
    again = asyncio.run(
        evidence.bookmark(
            lab.database, lab.container.artifacts, HttpSnapshotSource(), UUID(event_id),
            lab.container.clock,
        )
    )  # fmt: skip
    assert again is None


def test_a_failed_snapshot_is_recorded_with_its_reason_and_the_command_still_went(
    lab: Lab,
) -> None:
    with CameraPeer() as camera:
        _camera_in(lab, "cnc-room", camera.serve("/still.png", b"busy", "text/plain", 503))
        event_id, kept, actions = _sent_and_bookmarked(lab)
    assert kept is not None and kept.evidence_key is None
    assert kept.unavailable is not None and "HTTP 503" in kept.unavailable
    assert lab.event(event_id)["evidenceKey"] is None
    assert actions[-1] == "safety.evidence_unavailable"
    with lab.database.unit_of_work() as s:
        event = s.get(SafetyEvent, UUID(event_id))
        assert event is not None and "HTTP 503" in event.details["evidence_unavailable"]


def test_a_zone_without_a_camera_says_so_instead_of_a_bookmark(lab: Lab) -> None:
    _, kept, actions = _sent_and_bookmarked(lab)
    assert kept is not None and kept.evidence_key is None
    assert kept.unavailable is not None and "no camera" in kept.unavailable
    assert actions[-1] == "safety.evidence_unavailable"
