"""Email addresses are the person's own, safety's and admin's to see; names, roles and who
is in a zone now are everyone's (issue 13)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Zone
from kittylab.domain.enums import HazardLevel
from kittylab.people import identity
from tests.integration.conftest import Person

pytestmark = pytest.mark.postgres


def _person(database: Database, username: str, roles: list[str]) -> Person:
    with database.unit_of_work() as session:
        user = identity.create_user(
            session,
            username=username,
            display_name=username.title(),
            roles=roles,
            email=f"{username}@lab.example",
        )
        issued = identity.issue_token(session, user)
    return Person(user.id, issued.token)


@pytest.fixture
def people(database: Database) -> dict[str, Person]:
    return {
        name: _person(database, name, roles)
        for name, roles in (
            ("olivia", ["operator"]),
            ("erin", ["engineer"]),
            ("sam", ["safety"]),
            ("ada", ["admin"]),
        )
    }


def _emails(client: TestClient, who: Person) -> dict[str, Any]:
    response = client.get("/api/users", headers=who.headers)
    assert response.status_code == 200, response.text
    return {u["username"]: u["email"] for u in response.json()["items"]}


@pytest.mark.parametrize("viewer", ["olivia", "erin"])
def test_others_see_names_and_roles_but_not_email_addresses(
    client: TestClient, people: dict[str, Person], viewer: str
) -> None:
    me = people[viewer]
    emails = _emails(client, me)
    assert emails == {name: f"{name}@lab.example" if name == viewer else None for name in people}
    other = "sam"
    seen = client.get(f"/api/users/{people[other].user_id}", headers=me.headers).json()
    assert seen["email"] is None
    assert seen["displayName"] == "Sam" and seen["roles"] == ["safety"]
    own = client.get(f"/api/users/{me.user_id}", headers=me.headers).json()
    assert own["email"] == f"{viewer}@lab.example"
    assert client.get("/api/me", headers=me.headers).json()["email"] == f"{viewer}@lab.example"


@pytest.mark.parametrize("viewer", ["sam", "ada"])
def test_safety_and_admin_see_every_email_address(
    client: TestClient, people: dict[str, Person], viewer: str
) -> None:
    assert _emails(client, people[viewer]) == {name: f"{name}@lab.example" for name in people}
    seen = client.get(f"/api/users/{people['olivia'].user_id}", headers=people[viewer].headers)
    assert seen.json()["email"] == "olivia@lab.example"


def test_who_is_in_a_zone_now_stays_visible_to_everyone(
    client: TestClient, database: Database, people: dict[str, Person]
) -> None:
    with database.unit_of_work() as session:
        zone = Zone(name="print-farm", hazard_level=HazardLevel.LOW)
        session.add(zone)
        session.flush()
        zone_id: UUID = zone.id
    olivia = people["olivia"]
    checked_in = client.post("/api/presence", json={"zoneId": str(zone_id)}, headers=olivia.headers)
    assert checked_in.status_code == 201
    occupancy = client.get(f"/api/zones/{zone_id}/occupancy", headers=people["erin"].headers)
    assert occupancy.json()["presentUserIds"] == [str(olivia.user_id)]
    assert occupancy.json()["countingUserIds"] == [str(olivia.user_id)]
