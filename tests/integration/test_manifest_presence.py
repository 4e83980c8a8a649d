"""The manifest's ``unifi_id`` (UniFi Access user ids) and the audit entries an apply
leaves for key and policy changes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import AuditEntry, User
from kittylab.manifest import ManifestError, apply_manifest, build_manifest, render_lab
from kittylab.people import identity
from kittylab.records import audit
from tests.integration.conftest import Person

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
SAM_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmxqyOO4ADf7CEZp4GRsEz/gLdntXFu/b5hGyZWHFJz sam"

# These tests read the key and policy entries; zones, devices and people are in
# test_manifest_review.py (and the fixtures' people and tokens are audited too).
NOT_FIXTURES = (AuditEntry.action.startswith("key.") | AuditEntry.action.startswith("policy."),)


@pytest.fixture
def demo_data(demo_lab_path: Path) -> dict[str, Any]:
    data = yaml.safe_load(demo_lab_path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def user_entry(data: dict[str, Any], username: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(u for u in data["users"] if u["username"] == username)
    return entry


def apply(database: Database, data: dict[str, Any], now: datetime = T0) -> None:
    with database.unit_of_work() as session:
        apply_manifest(session, build_manifest(data), now)


def unifi_ids(database: Database) -> dict[str, str | None]:
    with database.unit_of_work() as session:
        return {u.username: u.unifi_user_id for u in session.scalars(select(User))}


def entries(database: Database) -> list[AuditEntry]:
    with database.unit_of_work() as session:
        found = list(
            session.scalars(select(AuditEntry).where(*NOT_FIXTURES).order_by(AuditEntry.seq))
        )
        session.expunge_all()
        return found


def test_unifi_id_round_trips_through_apply_and_show(
    database: Database, demo_data: dict[str, Any]
) -> None:
    user_entry(demo_data, "olivia")["unifi_id"] = "ua-olivia-0001"
    apply(database, demo_data)
    assert unifi_ids(database)["olivia"] == "ua-olivia-0001"
    with database.unit_of_work() as session:
        shown = render_lab(session)
    olivia = next(line for line in shown.splitlines() if line.startswith("olivia "))
    assert olivia.rstrip().endswith("ua-olivia-0001")

    with database.unit_of_work() as session:
        report = apply_manifest(session, build_manifest(demo_data), T1)
    assert not report.changed

    del user_entry(demo_data, "olivia")["unifi_id"]
    apply(database, demo_data, T1)
    assert unifi_ids(database)["olivia"] is None


def test_a_unifi_id_on_two_people_is_refused_naming_the_field(demo_data: dict[str, Any]) -> None:
    user_entry(demo_data, "olivia")["unifi_id"] = "ua-shared"
    user_entry(demo_data, "erin")["unifi_id"] = "ua-shared"
    with pytest.raises(ManifestError) as caught:
        build_manifest(demo_data)
    erin = next(i for i, u in enumerate(demo_data["users"]) if u["username"] == "erin")
    assert caught.value.field == f"users[{erin}].unifi_id"
    assert "duplicate unifi_id 'ua-shared'" in caught.value.message


def test_a_numeric_unifi_id_must_be_quoted(demo_data: dict[str, Any]) -> None:
    user_entry(demo_data, "olivia")["unifi_id"] = 1234
    with pytest.raises(ManifestError) as caught:
        build_manifest(demo_data)
    assert caught.value.field.endswith(".unifi_id")
    assert "quotes" in caught.value.message


def test_two_people_can_swap_unifi_ids_in_one_apply(
    database: Database, demo_data: dict[str, Any]
) -> None:
    user_entry(demo_data, "olivia")["unifi_id"] = "ua-1"
    user_entry(demo_data, "erin")["unifi_id"] = "ua-2"
    apply(database, demo_data)
    user_entry(demo_data, "olivia")["unifi_id"] = "ua-2"
    user_entry(demo_data, "erin")["unifi_id"] = "ua-1"
    apply(database, demo_data, T1)
    ids = unifi_ids(database)
    assert (ids["olivia"], ids["erin"]) == ("ua-2", "ua-1")


def test_a_removed_person_gives_up_their_unifi_id(
    database: Database, demo_data: dict[str, Any]
) -> None:
    user_entry(demo_data, "olivia")["unifi_id"] = "ua-1"
    apply(database, demo_data)
    edited = copy.deepcopy(demo_data)
    edited["users"] = [u for u in edited["users"] if u["username"] != "olivia"]
    user_entry(edited, "erin")["unifi_id"] = "ua-1"
    apply(database, edited, T1)
    ids = unifi_ids(database)
    assert (ids["olivia"], ids["erin"]) == (None, "ua-1")


def test_a_unifi_id_held_by_someone_outside_the_manifest_is_refused(
    database: Database, demo_data: dict[str, Any]
) -> None:
    with database.unit_of_work() as session:
        guest = identity.create_user(
            session, username="guest", display_name="Guest", roles=["operator"]
        )
        guest.unifi_user_id = "ua-guest"
    user_entry(demo_data, "olivia")["unifi_id"] = "ua-guest"
    with pytest.raises(ManifestError) as caught:
        apply(database, demo_data)
    olivia = next(i for i, u in enumerate(demo_data["users"]) if u["username"] == "olivia")
    assert caught.value.field == f"users[{olivia}].unifi_id"
    assert "'guest'" in caught.value.message
    assert unifi_ids(database) == {"guest": "ua-guest"}  # the failed apply left nothing


def test_key_and_policy_changes_are_audited_and_a_repeat_apply_adds_nothing(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, demo_data)
    first = entries(database)
    assert sorted((e.action, e.details.get("policy") or e.details.get("user")) for e in first) == [
        ("key.added", "ada"),
        ("policy.changed", "cnc-room-hazards"),
        ("policy.changed", "laser-room-hazards"),
        ("policy.changed", "welding-bay-hazards"),
    ]
    assert all(e.details["source"] == "manifest" for e in first)
    key_added = next(e for e in first if e.action == "key.added")
    assert key_added.subject_type == "user_key" and key_added.details["key_type"] == "ssh-ed25519"

    apply(database, demo_data, T1)
    assert len(entries(database)) == len(first)

    edited = copy.deepcopy(demo_data)
    user_entry(edited, "ada")["keys"] = []
    user_entry(edited, "sam")["keys"] = [{"name": "yubikey", "public_key": SAM_KEY}]
    cnc = next(p for p in edited["policies"] if p["name"] == "cnc-room-hazards")
    cnc["required_roles"] = ["safety", "admin"]
    edited["policies"] = [p for p in edited["policies"] if p["name"] != "welding-bay-hazards"]
    apply(database, edited, T1 + timedelta(hours=1))

    later = entries(database)[len(first) :]
    summary = sorted(
        (e.action, e.details.get("change") or e.details.get("user"), e.details.get("name"))
        for e in later
    )
    assert summary == [
        ("key.added", "sam", "yubikey"),
        ("key.revoked", "ada", "laptop"),
        ("policy.changed", "deleted", None),
        ("policy.changed", "updated", None),
    ]
    updated = next(e for e in later if e.details.get("change") == "updated")
    assert updated.details["fields"] == {
        "required_roles": {"from": ["safety"], "to": ["safety", "admin"]}
    }
    with database.unit_of_work() as session:
        assert audit.verify_chain(session).intact


def test_an_apply_through_the_api_is_audited_as_the_admin(
    client: TestClient, database: Database, admin: Person, demo_lab_path: Path
) -> None:
    response = client.post(
        "/api/lab/apply",
        json={"manifest": demo_lab_path.read_text(encoding="utf-8")},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    found = entries(database)
    assert found and all(e.actor_id == admin.user_id for e in found)


def test_a_dry_run_leaves_no_audit_entries(
    client: TestClient, database: Database, admin: Person, demo_lab_path: Path
) -> None:
    response = client.post(
        "/api/lab/apply",
        json={"manifest": demo_lab_path.read_text(encoding="utf-8"), "dryRun": True},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert entries(database) == []


# -- which presence sources count in a zone (issue 13) -------------------------------------


def zone_entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(z for z in data["zones"] if z["name"] == name)
    return entry


def test_zones_count_presence_sources_by_hazard_level_unless_they_declare_theirs(
    database: Database, demo_data: dict[str, Any]
) -> None:
    zone_entry(demo_data, "cnc-room")["presence_sources"] = ["unifi", "override"]
    manifest = build_manifest(demo_data)
    assert manifest.zone("laser-room").presence_sources is None
    apply(database, demo_data)
    with database.unit_of_work() as session:
        shown = render_lab(session).splitlines()
    laser = next(line for line in shown if line.startswith("laser-room "))
    assert laser.rstrip().endswith("unifi, override, confirmed (default)")
    farm = next(line for line in shown if line.startswith("print-farm "))
    assert "manual" in farm
    cnc = next(line for line in shown if line.startswith("cnc-room "))
    assert cnc.rstrip().endswith("unifi, override")

    with database.unit_of_work() as session:
        assert not apply_manifest(session, build_manifest(demo_data), T1).changed


def test_an_unknown_presence_source_is_refused_naming_the_field(
    demo_data: dict[str, Any],
) -> None:
    zone_entry(demo_data, "laser-room")["presence_sources"] = ["unifi", "badge"]
    with pytest.raises(ManifestError) as caught:
        build_manifest(demo_data)
    laser = next(i for i, z in enumerate(demo_data["zones"]) if z["name"] == "laser-room")
    assert caught.value.field == f"zones[{laser}].presence_sources"
    assert "'badge' is not a presence source" in str(caught.value)
