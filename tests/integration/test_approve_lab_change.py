"""``kittylab approve`` for a held lab change (issue 13): the approver sees what weakens
safety and the change hash they sign, is asked, and signs nothing when what the server (or
something between) shows is not the change asked for.

The signature covers the event's intent, ``lab_apply:<change hash>``, and the hash covers
the lab revision, the manifest's SHA-256 and the weakening list, so the client recomputes
the hash from what it shows: a list with an entry dropped on the way is refused before
anything is signed.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, Notification, SafetyEvent, Zone
from kittylab.api.app import create_app
from kittylab.cli.main import app as cli
from kittylab.domain.enums import SafetyStatus
from tests.integration.api_server import served
from tests.integration.conftest import Person
from tests.integration.test_approval_proxy import proxy
from tests.integration.test_manifest_review import (  # noqa: F401 - fixtures
    demo_data,
    demo_lab,
    enrol_key,
    people,
    post_apply,
    weakened,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def held(
    client: TestClient,
    database: Database,
    container: bootstrap.Container,
    demo_lab: dict[str, Any],  # noqa: F811
    people: dict[str, Person],  # noqa: F811
) -> dict[str, Any]:
    """Ada's weakening manifest, held: the 202 body."""
    response = post_apply(client, people["ada"], weakened(demo_lab))
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def sam_key(database: Database, who: dict[str, Person], tmp_path: Path) -> Path:
    key = enrol_key(database, who["sam"].user_id)
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    path = tmp_path / "sam.key"
    path.write_text("ed25519-private:" + base64.b64encode(seed).decode())
    return path


def approve(
    url: str, token: str, event_id: str, key: Path, *extra: str, answer: str = "y\n"
) -> Any:
    return CliRunner().invoke(
        cli,
        ["approve", event_id, "--key", str(key), "--url", url, *extra],
        env={"KITTYLAB_TOKEN": token},
        input=answer,
    )


def laser_zone(database: Database) -> str:
    with database.unit_of_work() as s:
        laser = s.scalars(select(Device).where(Device.external_id == "laser-power")).one()
        zone = s.get(Zone, laser.zone_id)
        assert zone is not None
        return zone.name


def status(database: Database, event_id: str) -> SafetyStatus:
    with database.unit_of_work() as s:
        event = s.get(SafetyEvent, UUID(event_id))
        assert event is not None
        return event.status


def test_approve_shows_the_weakening_and_the_hash_asks_and_applies_the_change(
    container: bootstrap.Container,
    database: Database,
    people: dict[str, Person],  # noqa: F811
    held: dict[str, Any],
    tmp_path: Path,
) -> None:
    key = sam_key(database, people, tmp_path)
    event_id, change = held["eventId"], held["changeHash"]
    with served(create_app(container)) as port:
        url = f"http://127.0.0.1:{port}"
        declined = approve(url, people["sam"].token, event_id, key, answer="n\n")
        assert declined.exit_code == 1, declined.output
        assert status(database, event_id) is SafetyStatus.PENDING
        result = approve(url, people["sam"].token, event_id, key, "--change", change[:12])

    assert result.exit_code == 0, result.output
    for shown in [change, "Ada", "Sign this approval?", *(w["change"] for w in held["weakening"])]:
        assert shown in result.output, shown
    assert "Weakens safety" in result.output
    assert "approved — the lab change is applied" in result.output
    assert status(database, event_id) is SafetyStatus.APPROVED
    assert laser_zone(database) == "print-farm"
    # The sender is told in a lab change's words, not a command's.
    with database.unit_of_work() as s:
        told = s.scalars(
            select(Notification).where(
                Notification.related_safety_event_id == UUID(event_id),
                Notification.recipient == "ada",
            )
        ).all()
        [(title, body)] = [(n.payload["title"], n.payload["body"]) for n in told]
    assert title.startswith("Lab change approved")
    assert "lab change" in body and "applied" in body
    assert "being sent" not in body and " on the lab" not in body


def test_a_weakening_list_shortened_on_the_way_gets_no_signature(
    container: bootstrap.Container,
    database: Database,
    people: dict[str, Person],  # noqa: F811
    held: dict[str, Any],
    tmp_path: Path,
) -> None:
    key = sam_key(database, people, tmp_path)

    def hide_the_role_grant(method: str, body: dict[str, Any]) -> dict[str, Any]:
        change = (body.get("details") or {}).get("change")
        if method == "GET" and isinstance(change, dict):
            change["weakening"] = [w for w in change["weakening"] if w["kind"] != "role.granted"]
        return body

    with (
        served(create_app(container)) as port,
        proxy(f"http://127.0.0.1:{port}", answer=hide_the_role_grant) as (url, forwarded),
    ):
        result = approve(url, people["sam"].token, held["eventId"], key, "--yes")
    assert result.exit_code == 1, result.output
    assert "does not match its change hash" in result.output
    assert "nothing was signed" in result.output
    assert [f for f in forwarded if f.startswith("POST")] == []
    assert status(database, held["eventId"]) is SafetyStatus.PENDING


def test_approve_refuses_a_change_other_than_the_pinned_one_or_a_command_for_a_change(
    container: bootstrap.Container,
    database: Database,
    people: dict[str, Person],  # noqa: F811
    held: dict[str, Any],
    tmp_path: Path,
) -> None:
    key = sam_key(database, people, tmp_path)
    event_id = held["eventId"]
    with served(create_app(container)) as port:
        url = f"http://127.0.0.1:{port}"
        other = approve(url, people["sam"].token, event_id, key, "--yes", "--change", "0" * 64)
        device = approve(
            url, people["sam"].token, event_id, key, "--yes", "--device", "laser-power"
        )
    assert other.exit_code == 1, other.output
    assert f"is lab change {held['changeHash']}, not 0000" in other.output
    assert device.exit_code == 1, device.output
    assert "is for device None" in device.output
    assert status(database, event_id) is SafetyStatus.PENDING
