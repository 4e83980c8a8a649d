"""``kittylab presence`` against the real API (FastAPI's TestClient behind ApiClient)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import SafetyEvent, Zone, ZonePresence
from kittylab.api.app import create_app
from kittylab.cli import presence as presence_cli
from kittylab.cli.client import ApiClient
from kittylab.cli.main import app
from kittylab.domain.enums import HazardLevel, PresenceSource, PresenceStatus
from tests.integration.conftest import Person

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 2, 14, 20, tzinfo=UTC)


@pytest.fixture
def laser(database: Database, container: bootstrap.Container) -> UUID:
    container.clock = lambda: NOW
    with database.unit_of_work() as session:
        zone = Zone(name="laser-room", hazard_level=HazardLevel.HIGH)
        session.add(zone)
        session.flush()
        return zone.id


@pytest.fixture
def as_person(
    container: bootstrap.Container, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Person], None]:
    """Run the CLI as ``person``: its client talks to the app in-process."""
    web = create_app(container)

    def use(person: Person) -> None:
        monkeypatch.setattr(
            presence_cli,
            "connect",
            lambda url: ApiClient(
                "http://testserver",
                person.token,
                http=TestClient(web, client=("127.0.0.1", 50000)),
            ),
        )

    return use


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["presence", *args])
    return result.exit_code, result.output


def local(at: datetime) -> str:
    return f"{at.astimezone():%H:%M}"


def test_checkin_says_who_is_checked_in_where_and_until_when(
    database: Database, operator: Person, laser: UUID, as_person: Callable[[Person], None]
) -> None:
    as_person(operator)
    code, output = run("checkin", "laser-room")
    assert code == 0, output
    until = local(NOW + timedelta(seconds=900))
    first, note = output.strip().splitlines()
    assert first == f"Olivia is checked in to laser-room until {until}"
    # A high-hazard zone: a check-in by hand needs someone present to confirm it.
    assert note.endswith("kittylab presence confirm laser-room olivia")
    with database.unit_of_work() as session:
        row = session.scalars(select(ZonePresence)).one()
        assert (row.user_id, row.source, row.status) == (
            operator.user_id,
            PresenceSource.MANUAL,
            PresenceStatus.PRESENT,
        )


def test_checkout_and_list(
    database: Database,
    operator: Person,
    laser: UUID,
    container: bootstrap.Container,
    as_person: Callable[[Person], None],
) -> None:
    as_person(operator)
    assert run("checkin", str(laser))[0] == 0
    code, output = run("list")
    assert code == 0, output
    assert "laser-room:" in output
    assert f"Olivia  since {local(NOW)} (checked in), until" in output

    container.clock = lambda: NOW + timedelta(seconds=5)
    code, output = run("checkout", "laser-room")
    assert code == 0, output
    assert "Olivia is checked out of laser-room" in output
    assert run("list", "--zone", "laser-room")[1].strip() == "laser-room: nobody"


def test_checking_in_someone_else_needs_the_safety_role(
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    as_person: Callable[[Person], None],
) -> None:
    as_person(operator)
    code, output = run("checkin", "laser-room", "--user", "sam")
    assert code == 1
    assert "safety role" in output and "HTTP 403" in output

    as_person(safety_lead)
    code, output = run("checkin", "laser-room", "--user", "olivia")
    assert code == 0, output
    assert output.startswith("Olivia is checked in to laser-room")


def test_an_unknown_zone_lists_the_known_ones(
    operator: Person, laser: UUID, as_person: Callable[[Person], None]
) -> None:
    as_person(operator)
    code, output = run("checkin", "laser-rom")
    assert code == 1
    assert "no zone is called 'laser-rom'; zones: laser-room" in output


def test_override_by_the_safety_role(
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    as_person: Callable[[Person], None],
) -> None:
    as_person(safety_lead)
    code, output = run("override", "laser-room", "olivia", "--reason", "reader offline")
    assert code == 0, output
    assert output.startswith("override recorded: Olivia is checked in to laser-room until")
    code, output = run(
        "override", "laser-room", "Olivia", "--reason", "left by the fire exit", "--vacated"
    )
    assert code == 0, output
    assert "Olivia is checked out of laser-room" in output
    with database.unit_of_work() as session:
        assert len(session.scalars(select(SafetyEvent)).all()) == 2

    as_person(operator)
    code, output = run("override", "laser-room", "olivia", "--reason", "trust me")
    assert code == 1 and "HTTP 403" in output


def test_list_shows_everyone_present_but_only_your_own_history(
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    as_person: Callable[[Person], None],
) -> None:
    as_person(safety_lead)
    assert run("checkin", "laser-room")[0] == 0
    as_person(operator)
    assert run("checkin", "laser-room")[0] == 0
    code, output = run("list")
    assert code == 0, output
    assert f"Olivia  since {local(NOW)} (checked in), until" in output
    assert "Sam  present" in output


def test_confirm_makes_a_check_in_count_and_list_says_whose_presence_does_not(
    database: Database,
    operator: Person,
    safety_lead: Person,
    laser: UUID,
    as_person: Callable[[Person], None],
) -> None:
    as_person(operator)
    assert run("checkin", "laser-room")[0] == 0
    code, output = run("list")
    assert "(checked in), until" in output
    assert "does not count for hazardous work here" in output
    # Sam badged in at the door; he sees Olivia there and confirms.
    with database.unit_of_work() as session:
        session.add(
            ZonePresence(
                zone_id=laser,
                user_id=safety_lead.user_id,
                source=PresenceSource.UNIFI,
                status=PresenceStatus.PRESENT,
                observed_at=NOW,
            )
        )
    as_person(safety_lead)
    code, output = run("confirm", "laser-room", "olivia")
    assert code == 0, output
    assert output.startswith("confirmed: Olivia is checked in to laser-room until")
    code, output = run("list")
    assert "does not count" not in output
    assert "(check-in confirmed)" in output


def test_confirm_by_someone_not_there_is_refused_with_the_reason(
    operator: Person, safety_lead: Person, laser: UUID, as_person: Callable[[Person], None]
) -> None:
    as_person(operator)
    assert run("checkin", "laser-room")[0] == 0
    as_person(safety_lead)
    code, output = run("confirm", "laser-room", "olivia")
    assert code != 0
    assert "only someone present in laser-room" in output
