"""Applying a manifest to a real PostgreSQL: upserts, idempotence, retirement, rendering."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import (
    AccessPolicy,
    ApiToken,
    Device,
    SafetyEvent,
    User,
    UserKey,
    Zone,
)
from kittylab.domain.enums import OnlineState, Role, SafetyEventType
from kittylab.manifest import (
    ApplyReport,
    LabManifest,
    apply_manifest,
    build_manifest,
    load_manifest,
    render_lab,
)
from tests.integration.conftest import Person

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
MANAGED = (Zone, Device, User, UserKey, AccessPolicy)
SAM_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILmxqyOO4ADf7CEZp4GRsEz/gLdntXFu/b5hGyZWHFJz sam"


@pytest.fixture
def demo_data(demo_lab_path: Path) -> dict[str, Any]:
    """The demo lab as plain data, for tests to edit before building a manifest."""
    data = yaml.safe_load(demo_lab_path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def apply(database: Database, manifest: LabManifest, now: datetime) -> ApplyReport:
    with database.unit_of_work() as session:
        return apply_manifest(session, manifest, now)


def snapshot(database: Database) -> dict[str, list[dict[str, Any]]]:
    """Every column of every row the manifest manages, ordered by id."""
    with database.unit_of_work() as session:
        result: dict[str, list[dict[str, Any]]] = {}
        for table in MANAGED:
            columns = [c.key for c in table.__mapper__.column_attrs]
            rows = session.scalars(select(table).order_by(table.id))
            result[table.__tablename__] = [{c: getattr(r, c) for c in columns} for r in rows]
        return result


def without(data: dict[str, Any], section: str, key: str, value: str) -> dict[str, Any]:
    edited = copy.deepcopy(data)
    edited[section] = [e for e in edited[section] if e[key] != value]
    return edited


def device_row(session: Session, external_id: str) -> Device:
    return session.scalars(select(Device).where(Device.external_id == external_id)).one()


def test_first_apply_creates_the_demo_lab(database: Database, demo_lab_path: Path) -> None:
    report = apply(database, load_manifest(demo_lab_path), T0)
    assert (report.zones.created, report.devices.created) == (5, 18)
    assert (report.users.created, report.keys.created, report.policies.created) == (5, 1, 3)
    with database.unit_of_work() as session:
        assert len(session.scalars(select(Device)).all()) == 18
        laser = session.scalars(
            select(AccessPolicy).where(AccessPolicy.name == "laser-room-hazards")
        ).one()
        assert laser.requires_dual_confirm
        assert laser.requires_presence
        assert laser.required_roles == [Role.SAFETY, Role.ADMIN]
        prusa = device_row(session, "prusa-mk4")
        assert prusa.online_state is OnlineState.OFFLINE
        assert "print_start" in prusa.capabilities
        assert prusa.aliases[:2] == ["Prusa", "MK4"]


def test_second_apply_changes_nothing(database: Database, demo_lab_path: Path) -> None:
    manifest = load_manifest(demo_lab_path)
    apply(database, manifest, T0)
    before = snapshot(database)

    report = apply(database, manifest, T1)

    assert not report.changed
    for kind, tally in report.tallies().items():
        assert (tally.created, tally.updated, tally.retired) == (0, 0, 0), kind
    assert report.devices.unchanged == 18
    assert report.zones.unchanged == 5
    assert report.policies.unchanged == 3
    assert snapshot(database) == before


def test_removed_device_is_retired_and_keeps_its_row(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    report = apply(
        database, build_manifest(without(demo_data, "devices", "external_id", "voron-24")), T1
    )
    assert report.devices.retired == 1
    assert report.devices.unchanged == 17
    with database.unit_of_work() as session:
        voron = device_row(session, "voron-24")
        assert voron.retired_at == T1
        assert device_row(session, "prusa-mk4").retired_at is None

    again = apply(
        database, build_manifest(without(demo_data, "devices", "external_id", "voron-24")), T2
    )
    assert again.devices.retired == 0
    with database.unit_of_work() as session:
        assert device_row(session, "voron-24").retired_at == T1


def test_readded_device_is_unretired_with_the_same_id(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    with database.unit_of_work() as session:
        original_id = device_row(session, "laser-cam").id
    apply(database, build_manifest(without(demo_data, "devices", "external_id", "laser-cam")), T1)

    report = apply(database, build_manifest(demo_data), T2)

    assert report.devices.updated == 1
    assert report.devices.created == 0
    with database.unit_of_work() as session:
        cam = device_row(session, "laser-cam")
        assert cam.id == original_id
        assert cam.retired_at is None


def test_apply_never_touches_runtime_state_of_devices(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    with database.unit_of_work() as session:
        prusa = device_row(session, "prusa-mk4")
        prusa.online_state = OnlineState.ONLINE
        prusa.last_seen = T1
    edited = copy.deepcopy(demo_data)
    edited["devices"][0]["aliases"] = ["Prusa", "MK4", "the orange one"]

    report = apply(database, build_manifest(edited), T2)

    assert report.devices.updated == 1
    with database.unit_of_work() as session:
        prusa = device_row(session, "prusa-mk4")
        assert prusa.aliases == ["Prusa", "MK4", "the orange one"]
        assert prusa.online_state is OnlineState.ONLINE
        assert prusa.last_seen == T1


def test_connection_env_references_are_stored_unexpanded(
    database: Database, demo_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCTO_KEY", "real-secret-value")
    edited = copy.deepcopy(demo_data)
    edited["devices"][0]["connection"] = {"url": "http://octopi.local", "api_key": "${OCTO_KEY}"}
    apply(database, build_manifest(edited), T0)
    with database.unit_of_work() as session:
        connection = device_row(session, "prusa-mk4").connection
    assert connection == {"url": "http://octopi.local", "api_key": "${OCTO_KEY}"}


def test_removed_user_is_deactivated_and_comes_back_when_readded(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    report = apply(database, build_manifest(without(demo_data, "users", "username", "erin")), T1)
    assert report.users.retired == 1
    with database.unit_of_work() as session:
        erin = session.scalars(select(User).where(User.username == "erin")).one()
        assert erin.active is False
        erin_id = erin.id

    back = apply(database, build_manifest(demo_data), T2)
    assert back.users.updated == 1
    with database.unit_of_work() as session:
        erin = session.scalars(select(User).where(User.username == "erin")).one()
        assert (erin.id, erin.active) == (erin_id, True)


def test_user_fields_follow_the_manifest(database: Database, demo_data: dict[str, Any]) -> None:
    apply(database, build_manifest(demo_data), T0)
    edited = copy.deepcopy(demo_data)
    olivia = next(u for u in edited["users"] if u["username"] == "olivia")
    olivia["roles"] = ["operator", "engineer"]
    olivia["email"] = "o.operator@lab.example"

    report = apply(database, build_manifest(edited), T1)

    assert (report.users.updated, report.users.unchanged) == (1, 4)
    with database.unit_of_work() as session:
        row = session.scalars(select(User).where(User.username == "olivia")).one()
        assert row.roles == [Role.OPERATOR, Role.ENGINEER]
        assert row.email == "o.operator@lab.example"


def test_keys_are_added_revoked_and_never_unrevoked(
    database: Database, demo_data: dict[str, Any]
) -> None:
    edited = copy.deepcopy(demo_data)
    sam = next(u for u in edited["users"] if u["username"] == "sam")
    sam["keys"] = [{"name": "yubikey", "public_key": SAM_KEY}]
    apply(database, build_manifest(edited), T0)

    sam["keys"] = []
    removed = apply(database, build_manifest(edited), T1)
    assert removed.keys.retired == 1

    sam["keys"] = [{"name": "yubikey", "public_key": SAM_KEY + " renamed-comment"}]
    readded = apply(database, build_manifest(edited), T2)
    assert readded.keys.created == 0
    assert any("stays revoked" in w for w in readded.warnings)
    with database.unit_of_work() as session:
        keys = session.scalars(
            select(UserKey).join(User, User.id == UserKey.user_id).where(User.username == "sam")
        ).all()
        assert [(k.public_key, k.revoked_at) for k in keys] == [(SAM_KEY, T1)]


def test_keys_of_users_without_a_keys_entry_are_left_alone(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    with database.unit_of_work() as session:
        sam = session.scalars(select(User).where(User.username == "sam")).one()
        session.add(UserKey(user_id=sam.id, name="cli", public_key=SAM_KEY))

    report = apply(database, build_manifest(demo_data), T1)

    assert report.keys.retired == 0
    with database.unit_of_work() as session:
        key = session.scalars(select(UserKey).where(UserKey.name == "cli")).one()
        assert key.revoked_at is None


def test_high_hazard_policy_is_stored_with_dual_confirm_forced(
    database: Database, demo_data: dict[str, Any]
) -> None:
    edited = copy.deepcopy(demo_data)
    welding = next(p for p in edited["policies"] if p["zone"] == "welding-bay")
    welding["requires_dual_confirm"] = False
    apply(database, build_manifest(edited), T0)
    with database.unit_of_work() as session:
        row = session.scalars(
            select(AccessPolicy).where(AccessPolicy.name == welding["name"])
        ).one()
        assert row.requires_dual_confirm is True
        assert row.pqe_checks == {
            "required": ["safety_glasses", "welding_helmet", "welding_gloves"]
        }


def test_removed_policy_is_deleted_unless_safety_events_cite_it(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    with database.unit_of_work() as session:
        laser = session.scalars(
            select(AccessPolicy).where(AccessPolicy.name == "laser-room-hazards")
        ).one()
        ada = session.scalars(select(User).where(User.username == "ada")).one()
        session.add(
            SafetyEvent(
                event_type=SafetyEventType.UNLOCK,
                zone_id=laser.zone_id,
                policy_id=laser.id,
                initiated_by=ada.id,
            )
        )
    edited = copy.deepcopy(demo_data)
    edited["policies"] = [p for p in edited["policies"] if p["zone"] == "welding-bay"]

    report = apply(database, build_manifest(edited), T1)

    assert report.policies.retired == 2
    with database.unit_of_work() as session:
        rows = {p.name: p.retired_at for p in session.scalars(select(AccessPolicy))}
    assert rows == {"laser-room-hazards": T1, "welding-bay-hazards": None}
    again = apply(database, build_manifest(edited), T2)
    assert not again.changed


def test_removed_zone_is_deleted_once_nothing_refers_to_it(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    edited = without(demo_data, "zones", "name", "electronics-bench")
    edited["devices"] = [d for d in edited["devices"] if d["zone"] != "electronics-bench"]

    report = apply(database, build_manifest(edited), T1)

    # Its retired light still refers to it, so the zone stays, with a warning.
    assert report.zones.retired == 0
    assert any("electronics-bench" in w for w in report.warnings)
    with database.unit_of_work() as session:
        assert device_row(session, "bench-lights").retired_at == T1
        session.delete(device_row(session, "bench-lights"))

    cleared = apply(database, build_manifest(edited), T2)

    assert cleared.zones.retired == 1
    with database.unit_of_work() as session:
        names = set(session.scalars(select(Zone.name)))
    assert "electronics-bench" not in names
    assert len(names) == 4


def test_render_shows_devices_users_and_policies_but_no_tokens(
    database: Database, demo_data: dict[str, Any]
) -> None:
    apply(database, build_manifest(demo_data), T0)
    with database.unit_of_work() as session:
        ada = session.scalars(select(User).where(User.username == "ada")).one()
        session.add(ApiToken(user_id=ada.id, token_hash="f" * 64, label="cli"))
    apply(database, build_manifest(without(demo_data, "devices", "external_id", "voron-24")), T1)

    with database.unit_of_work() as session:
        text = render_lab(session)

    lines = text.splitlines()
    voron = next(line for line in lines if line.startswith("voron-24 "))
    assert "2025-03-01 10:00Z" in voron
    prusa = next(line for line in lines if line.startswith("prusa-mk4 "))
    assert prusa.split()[1:4] == ["printer", "print-farm", "simulated"]
    assert "Prusa, MK4" in prusa
    assert "offline" in prusa
    assert any(line.startswith("sasha ") and "safety" in line for line in lines)
    laser = next(line for line in lines if line.startswith("laser-room-hazards"))
    assert "door_unlock, power_on" in laser
    assert "laser_safety_glasses" in laser
    assert "f" * 64 not in text
    assert "ssh-ed25519" not in text
    for title in ("Zones", "Devices", "Users", "Policies"):
        assert title in lines


def test_render_of_an_empty_lab_says_so(database: Database) -> None:
    with database.unit_of_work() as session:
        text = render_lab(session)
    assert text.count("(none)") == 4


def test_people_added_outside_the_manifest_survive_an_apply(
    database: Database, demo_data: dict[str, Any]
) -> None:
    from kittylab.people import identity

    with database.unit_of_work() as session:
        identity.create_user(session, username="guest", display_name="Guest", roles=["operator"])
    apply(database, build_manifest(demo_data), T0)
    with database.unit_of_work() as session:
        guest = session.scalars(select(User).where(User.username == "guest")).one()
        assert guest.active
        assert not guest.managed_by_manifest


def test_api_answers_a_merge_key_bomb_with_422_at_once(
    client: TestClient, admin: Person, database: Database
) -> None:
    # An alias bomb inside a << merge, which the node count used to skip: 2**21 items.
    levels = ", ".join(
        ["l0: &l0 [x, x]", *(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 21))]
    )
    bomb = (
        "zones:\n  - {name: shop, hazard_level: low}\n"
        "devices:\n  - external_id: p\n    kind: printer\n    zone: shop\n"
        f"    attributes:\n      <<: {{{levels}}}\n"
    )

    started = time.perf_counter()
    response = client.post(
        "/api/lab/apply", json={"manifest": bomb, "dryRun": True}, headers=admin.headers
    )

    assert time.perf_counter() - started < 2
    assert response.status_code == 422, response.text
    assert "expands to more than" in response.text
    with database.unit_of_work() as session:
        assert session.scalars(select(Zone)).all() == []
