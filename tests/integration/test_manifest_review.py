"""The manifest under the two-person rule (issue 13, hole 6), adversarially.

Through ``POST /api/lab/apply`` one admin moved the laser's power relay into the print
farm, set the welding bay to low hazard and gave an engineer the safety role, with no audit
entry; redeclaring a mains switch as a light made its ``light_on`` a safe, never-held
intent. Now every change an apply makes is in the audit chain, and over the API a manifest
that weakens safety is held as a ``policy_change`` safety event until a second person with
the safety role signs for it; it applies whole, or is void when the lab changed meanwhile.
"""

from __future__ import annotations

import base64
import copy
import secrets
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    AccessPolicy,
    AuditEntry,
    Device,
    SafetyEvent,
    User,
    UserKey,
    Zone,
)
from kittylab.cli.approve import payload_for
from kittylab.cli.main import app
from kittylab.domain.enums import HazardLevel, Role, SafetyStatus
from kittylab.manifest import apply_manifest, build_manifest
from kittylab.records import audit
from kittylab.safety.signatures import parse_public_key
from tests.integration.conftest import Person, _person

pytestmark = pytest.mark.postgres

MANAGED = (Zone, Device, User, UserKey, AccessPolicy)
NEW_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmxqyOO4ADf7CEZp4GRsEz/gLdntXFu/b5hGyZWHFJz sam"


@pytest.fixture
def demo_data(demo_lab_path: Path) -> dict[str, Any]:
    data = yaml.safe_load(demo_lab_path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def entry(data: dict[str, Any], section: str, key: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in data[section] if e[key] == name)
    return found


def weakened(demo: dict[str, Any]) -> dict[str, Any]:
    """The issue's repro: the laser's power relay moved into the print farm, the welding bay
    set to low hazard, the engineer given the safety role, a mains switch made a light."""
    data = copy.deepcopy(demo)
    entry(data, "devices", "external_id", "laser-power")["zone"] = "print-farm"
    entry(data, "zones", "name", "welding-bay")["hazard_level"] = "low"
    entry(data, "users", "username", "erin")["roles"] = ["engineer", "safety"]
    entry(data, "devices", "external_id", "cnc-spindle")["kind"] = "light"
    return data


def snapshot(database: Database) -> dict[str, list[dict[str, Any]]]:
    """Every column of every row the manifest manages (runtime state aside)."""
    with database.unit_of_work() as session:
        result: dict[str, list[dict[str, Any]]] = {}
        for table in MANAGED:
            columns = [c.key for c in table.__mapper__.column_attrs]
            rows = session.scalars(select(table).order_by(table.id))
            result[table.__tablename__] = [{c: getattr(r, c) for c in columns} for r in rows]
        return result


def actions(database: Database, after: int = 0) -> list[AuditEntry]:
    with database.unit_of_work() as session:
        found = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq)
            )
        )
        session.expunge_all()
        return found


def last_seq(database: Database) -> int:
    found = actions(database)
    return found[-1].seq if found else 0


def post_apply(
    client: TestClient, who: Person, data: dict[str, Any], *, dry_run: bool = False
) -> Any:
    return client.post(
        "/api/lab/apply",
        json={"manifest": yaml.safe_dump(data, sort_keys=False), "dryRun": dry_run},
        headers=who.headers,
    )


def enrol_key(database: Database, user_id: UUID) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    public = parse_public_key("ed25519:" + base64.b64encode(raw).decode())
    with database.unit_of_work() as s:
        s.add(UserKey(user_id=user_id, name="test", public_key=public.text))
    return key


def approve(
    client: TestClient, who: Person, key: Ed25519PrivateKey, event_id: str, reader: Person
) -> Any:
    """Sign the event as ``kittylab approve`` does: the payload built from the API's view
    (as ``reader`` sees it: an engineer may not read the event, only try to approve it)."""
    event = client.get(f"/api/safety/events/{event_id}", headers=reader.headers).json()
    payload = payload_for(event, nonce=secrets.token_urlsafe(24))
    signed = payload.canonical()
    return client.post(
        f"/api/safety/events/{event_id}/approve",
        json={
            "nonce": payload.nonce,
            "signature": base64.b64encode(key.sign(signed)).decode(),
            "signedPayload": signed.decode(),
        },
        headers=who.headers,
    )


@pytest.fixture
def people(database: Database) -> dict[str, Person]:
    """The demo lab's admin and safety officers, with tokens (the manifest updates them)."""
    return {
        "ada": _person(database, "ada", ["admin"]),
        "sam": _person(database, "sam", ["safety"]),
        "erin": _person(database, "erin", ["engineer"]),
    }


@pytest.fixture
def demo_lab(
    database: Database, container: bootstrap.Container, demo_data: dict[str, Any], people: Any
) -> dict[str, Any]:
    """The demo lab applied on the host (the operator's path)."""
    with database.unit_of_work() as session:
        apply_manifest(session, build_manifest(demo_data), container.clock())
    return demo_data


# -- every change is in the audit chain ------------------------------------------------------


def test_every_change_of_a_first_apply_is_audited_entry_by_entry(
    database: Database, container: bootstrap.Container, demo_data: dict[str, Any]
) -> None:
    with database.unit_of_work() as session:
        apply_manifest(session, build_manifest(demo_data), container.clock())

    found = Counter((e.action, e.subject_type) for e in actions(database))
    assert found[("zone.added", "zone")] == 5
    assert found[("device.added", "device")] == 18
    assert found[("user.added", "user")] == 5
    assert found[("key.added", "user_key")] == 1
    assert found[("policy.changed", "access_policy")] == 3
    entries = actions(database)
    assert all(e.details["source"] == "manifest" for e in entries)
    laser = next(e for e in entries if e.details.get("external_id") == "laser-power")
    assert laser.details["zone"] == "laser-room" and laser.details["kind"] == "power"
    ada = next(e for e in entries if e.action == "user.added" and e.details["username"] == "ada")
    assert ada.details["roles"] == ["admin"]

    seq = last_seq(database)
    with database.unit_of_work() as session:  # the same lab again: nothing to record
        apply_manifest(session, build_manifest(demo_data), container.clock())
    assert actions(database, seq) == []


def test_each_later_change_is_audited_with_what_it_was_before(
    database: Database, container: bootstrap.Container, demo_lab: dict[str, Any]
) -> None:
    seq = last_seq(database)
    edited = weakened(demo_lab)
    edited["devices"] = [d for d in edited["devices"] if d["external_id"] != "farm-cam"]
    edited["users"] = [u for u in edited["users"] if u["username"] != "olivia"]
    with database.unit_of_work() as session:
        apply_manifest(session, build_manifest(edited), container.clock())

    later = actions(database, seq)
    by_subject = {(e.action, e.details.get("name") or e.details.get("external_id")
                   or e.details.get("username")): e for e in later}  # fmt: skip
    zone = by_subject[("zone.changed", "welding-bay")]
    assert zone.details["fields"]["hazard_level"] == {"from": "high", "to": "low"}
    moved = by_subject[("device.changed", "laser-power")]
    assert moved.details["fields"]["zone"] == {"from": "laser-room", "to": "print-farm"}
    switch = by_subject[("device.changed", "cnc-spindle")]
    assert switch.details["fields"]["kind"] == {"from": "power", "to": "light"}
    assert switch.details["fields"]["intents"]["to"] == [
        "light_off",
        "light_on",
        "light_set_brightness",
    ]
    assert ("device.retired", "farm-cam") in by_subject
    granted = by_subject[("user.changed", "erin")]
    assert granted.details["fields"]["roles"] == {
        "from": ["engineer"],
        "to": ["engineer", "safety"],
    }
    assert ("user.deactivated", "olivia") in by_subject
    with database.unit_of_work() as session:
        assert audit.verify_chain(session).intact


def test_an_apply_through_the_api_is_audited_entry_by_entry_as_its_admin(
    client: TestClient, database: Database, admin: Person, demo_data: dict[str, Any]
) -> None:
    seq = last_seq(database)
    response = post_apply(client, admin, demo_data)
    assert response.status_code == 200, response.text
    later = actions(database, seq)
    assert sum(e.action == "device.added" for e in later) == 18
    assert all(e.actor_id == admin.user_id for e in later)


# -- weakening over the API is held for a second safety person ---------------------------------


def test_one_admin_cannot_weaken_the_lab_alone_it_waits_for_a_second_safety_person(
    client: TestClient, database: Database, demo_lab: dict[str, Any], people: dict[str, Person]
) -> None:
    keys = {name: enrol_key(database, people[name].user_id) for name in ("ada", "erin")}
    before = snapshot(database)

    response = post_apply(client, people["ada"], weakened(demo_lab))

    assert response.status_code == 202, response.text
    held = response.json()
    assert held["type"].endswith("/manifest-held")
    assert held["status"] == 202
    kinds = Counter(w["kind"] for w in held["weakening"])
    assert kinds["device.moved"] >= 1  # laser-power: print farm
    assert kinds["zone.hazard_lowered"] == 1  # welding-bay
    assert kinds["role.granted"] == 1  # erin: safety
    assert kinds["device.redeclared"] == 1  # cnc-spindle: light_on is not held
    text = " ".join(w["change"] for w in held["weakening"])
    assert "laser-power" in text and "welding-bay" in text and "erin" in text
    assert "cnc-spindle" in text
    assert snapshot(database) == before  # nothing changed
    event_id = held["eventId"]
    with database.unit_of_work() as s:
        event = s.get(SafetyEvent, UUID(event_id))
        assert event is not None
        assert event.event_type.value == "policy_change"
        assert event.status is SafetyStatus.PENDING
        assert event.initiated_by == people["ada"].user_id

    # The laser still needs what the laser room asks: its power relay has not moved.
    with database.unit_of_work() as s:
        laser = s.scalars(select(Device).where(Device.external_id == "laser-power")).one()
        zone = s.get(Zone, laser.zone_id)
        assert zone is not None and zone.name == "laser-room"

    # The admin cannot approve her own change, an engineer has no safety role.
    refused = approve(client, people["ada"], keys["ada"], event_id, people["ada"])
    assert refused.status_code == 403, refused.text
    assert "cannot approve their own request" in refused.json()["detail"]
    refused = approve(client, people["erin"], keys["erin"], event_id, people["ada"])
    assert refused.status_code == 403, refused.text
    assert "needs the safety role" in refused.json()["detail"]
    assert snapshot(database) == before

    # A second person with the safety role signs: the change applies, whole. Sam enrols
    # his key only now: keys the manifest does not list are not part of its revision.
    sam_key = enrol_key(database, people["sam"].user_id)
    seq = last_seq(database)
    approved = approve(client, people["sam"], sam_key, event_id, people["ada"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    with database.unit_of_work() as s:
        laser = s.scalars(select(Device).where(Device.external_id == "laser-power")).one()
        assert (z := s.get(Zone, laser.zone_id)) is not None and z.name == "print-farm"
        welding = s.scalars(select(Zone).where(Zone.name == "welding-bay")).one()
        assert welding.hazard_level is HazardLevel.LOW
        erin = s.scalars(select(User).where(User.username == "erin")).one()
        assert Role.SAFETY in erin.roles
    later = actions(database, seq)
    applied = [e for e in later if e.details.get("source") == "manifest"]
    assert applied and all(e.details.get("safety_event_id") == event_id for e in applied)
    assert later[-1].action == "safety.approved"


def test_a_held_change_is_void_when_the_lab_changed_before_it_was_approved(
    client: TestClient,
    database: Database,
    container: bootstrap.Container,
    demo_lab: dict[str, Any],
    people: dict[str, Person],
) -> None:
    key = enrol_key(database, people["sam"].user_id)
    response = post_apply(client, people["ada"], weakened(demo_lab))
    assert response.status_code == 202, response.text
    event_id = response.json()["eventId"]
    meanwhile = copy.deepcopy(demo_lab)
    entry(meanwhile, "devices", "external_id", "farm-lights")["aliases"] = ["barn lights"]
    with database.unit_of_work() as session:
        apply_manifest(session, build_manifest(meanwhile), container.clock())
    before = snapshot(database)

    refused = approve(client, people["sam"], key, event_id, people["ada"])

    assert refused.status_code == 409, refused.text
    assert "lab changed" in refused.json()["detail"]
    assert snapshot(database) == before
    with database.unit_of_work() as s:
        event = s.get(SafetyEvent, UUID(event_id))
        assert event is not None and event.status is SafetyStatus.DENIED
        assert event.reason is not None and "lab changed" in event.reason


def test_a_dry_run_shows_the_weakening_and_holds_nothing(
    client: TestClient, database: Database, demo_lab: dict[str, Any], people: dict[str, Person]
) -> None:
    before = snapshot(database)
    response = post_apply(client, people["ada"], weakened(demo_lab), dry_run=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dryRun"] is True and body["held"] is True
    assert {w["kind"] for w in body["weakening"]} >= {"zone.hazard_lowered", "role.granted"}
    assert snapshot(database) == before
    with database.unit_of_work() as s:
        assert s.scalars(select(SafetyEvent)).all() == []


def test_a_change_that_weakens_nothing_applies_at_once(
    client: TestClient, database: Database, demo_lab: dict[str, Any], people: dict[str, Person]
) -> None:
    stricter = copy.deepcopy(demo_lab)
    entry(stricter, "zones", "name", "print-farm")["hazard_level"] = "medium"
    entry(stricter, "devices", "external_id", "farm-lights")["aliases"] = ["barn lights"]
    response = post_apply(client, people["ada"], stricter)
    assert response.status_code == 200, response.text
    assert response.json()["weakening"] == []
    again = post_apply(client, people["ada"], stricter)
    assert again.status_code == 200 and again.json()["changed"] is False


def test_an_added_approval_key_is_held(
    client: TestClient, database: Database, demo_lab: dict[str, Any], people: dict[str, Person]
) -> None:
    data = copy.deepcopy(demo_lab)
    entry(data, "users", "username", "sam")["keys"] = [{"name": "yubikey", "public_key": NEW_KEY}]
    response = post_apply(client, people["ada"], data)
    assert response.status_code == 202, response.text
    assert [w["kind"] for w in response.json()["weakening"]] == ["key.added"]


def test_a_wider_presence_list_or_a_looser_materials_rule_is_held(
    client: TestClient,
    database: Database,
    container: bootstrap.Container,
    demo_data: dict[str, Any],
    people: dict[str, Person],
) -> None:
    """``manual`` added to the laser room's sources would let a check-in from anywhere open
    its approvals; dropping the print farm's fume extraction lets ABS start with it off."""
    with_rule = copy.deepcopy(demo_data)
    with_rule["policies"].append(
        {
            "name": "print-farm-materials",
            "zone": "print-farm",
            "required_roles": ["safety"],
            "hazardous_materials": {"fume_extraction": True, "ppe": ["respirator", "gloves"]},
        }
    )
    with database.unit_of_work() as session:
        apply_manifest(session, build_manifest(with_rule), container.clock())
    looser = copy.deepcopy(with_rule)
    entry(looser, "zones", "name", "laser-room")["presence_sources"] = [
        "unifi", "confirmed", "override", "manual"
    ]  # fmt: skip
    entry(looser, "policies", "name", "print-farm-materials")["hazardous_materials"] = {
        "ppe": ["respirator"]
    }
    before = snapshot(database)

    dry = post_apply(client, people["ada"], looser, dry_run=True)
    assert dry.status_code == 200 and dry.json()["held"] is True, dry.text
    response = post_apply(client, people["ada"], looser)

    assert response.status_code == 202, response.text
    found = {w["kind"]: w for w in response.json()["weakening"]}
    assert set(found) == {"zone.presence_widened", "policy.materials_loosened"}
    assert found["zone.presence_widened"]["subject"] == "laser-room"
    assert "now counts manual" in found["zone.presence_widened"]["change"]
    materials = found["policy.materials_loosened"]["change"]
    assert "no longer need the fume extraction on" in materials
    assert "no longer ask for PPE gloves" in materials
    assert snapshot(database) == before  # held whole: neither change is applied
    with database.unit_of_work() as s:
        event = s.get(SafetyEvent, UUID(response.json()["eventId"]))
        assert event is not None and event.event_type.value == "policy_change"
        assert event.details["policies"] == ["print-farm-materials"]

    # Narrowing the sources and asking for more PPE weakens nothing: applied at once.
    stricter = copy.deepcopy(with_rule)
    entry(stricter, "zones", "name", "laser-room")["presence_sources"] = ["unifi"]
    entry(stricter, "policies", "name", "print-farm-materials")["hazardous_materials"] = {
        "fume_extraction": True,
        "ppe": ["respirator", "gloves", "apron"],
    }
    applied = post_apply(client, people["ada"], stricter)
    assert applied.status_code == 200 and applied.json()["weakening"] == [], applied.text


# -- the on-host command line stays the operator's path ------------------------------------------


def test_the_host_cli_applies_at_once_and_says_what_it_weakened(
    database: Database,
    database_url: str,
    demo_lab: dict[str, Any],
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(yaml.safe_dump(weakened(demo_lab), sort_keys=False), encoding="utf-8")
    env = {"KITTYLAB_DATABASE_URL": database_url, "KITTYLAB_DATA_DIR": str(tmp_path / "data")}
    before = snapshot(database)

    dry = CliRunner().invoke(app, ["lab", "apply", str(manifest), "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "weakens safety" in dry.output and "welding-bay" in dry.output
    assert "dry run: nothing was stored" in dry.output
    assert snapshot(database) == before

    seq = last_seq(database)
    done = CliRunner().invoke(app, ["lab", "apply", str(manifest)], env=env)
    assert done.exit_code == 0, done.output
    assert "weakens safety" in done.output
    assert snapshot(database) != before
    later = actions(database, seq)
    assert any(e.action == "zone.changed" for e in later)
    assert all(e.actor_id is None for e in later)
