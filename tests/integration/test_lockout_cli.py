"""``kittylab locks`` against a live server (uvicorn on a thread, the real app and database)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Device, DeviceLock
from kittylab.api.app import create_app
from kittylab.cli.main import app
from kittylab.manifest import apply_manifest, load_manifest
from tests.integration.api_server import served
from tests.integration.conftest import Person, _person

LOCK_ID = re.compile(r"kittylab locks remove ([0-9a-f-]{36})")


@pytest.fixture
def server_url(
    container: bootstrap.Container,
    database: Database,
    demo_lab_path: Path,
    operator: Person,
    safety_lead: Person,
) -> Iterator[str]:
    """The demo lab served on a free port. The people come first: the manifest then
    updates them (display names) instead of clashing with them."""
    with database.unit_of_work() as s:
        apply_manifest(s, load_manifest(demo_lab_path), container.clock())
    with served(create_app(container)) as port:
        yield f"http://127.0.0.1:{port}"


def run(url: str, who: Person, *args: str) -> Result:
    env = {"KITTYLAB_URL": url, "KITTYLAB_TOKEN": who.token, "COLUMNS": "200"}
    return CliRunner().invoke(app, ["locks", *args], env=env)


def test_an_operator_locks_lists_and_unlocks_a_device_from_the_terminal(
    server_url: str, operator: Person, database: Database
) -> None:
    placed = run(server_url, operator, "place", "cnc-spindle", "--reason", "changing the belt")
    assert placed.exit_code == 0, placed.output
    assert "locked out cnc-spindle: changing the belt" in placed.output
    match = LOCK_ID.search(placed.output)
    assert match is not None
    lock_id = match.group(1)

    listed = run(server_url, operator, "list", "--device", "cnc-spindle")
    assert listed.exit_code == 0, listed.output
    assert lock_id in listed.output and "Olivia Operator" in listed.output

    removed = run(server_url, operator, "remove", lock_id)
    assert removed.exit_code == 0, removed.output
    assert "removed your lock on cnc-spindle" in removed.output
    assert "cnc-spindle has no locks left" in removed.output
    assert "no device is locked out" in run(server_url, operator, "list").output
    history = run(server_url, operator, "list", "--all")
    assert lock_id in history.output and "by owner" in history.output
    with database.unit_of_work() as s:
        assert s.get(DeviceLock, UUID(lock_id)).removed_at is not None  # type: ignore[union-attr]


def test_refusals_are_one_clear_line_and_exit_1(
    server_url: str, operator: Person, database: Database
) -> None:
    other = _person(database, "oscar", ["operator"])
    placed = run(server_url, operator, "place", "laser-power", "--reason", "new tube")
    lock_id = LOCK_ID.search(placed.output).group(1)  # type: ignore[union-attr]

    refused = run(server_url, other, "remove", lock_id)
    assert refused.exit_code == 1
    assert "only Olivia Operator can remove it" in refused.output
    assert "[HTTP 403]" in refused.output and "Traceback" not in refused.output

    unknown = run(server_url, operator, "place", "no-such-thing", "--reason", "x")
    assert unknown.exit_code == 1 and "no device is called 'no-such-thing'" in unknown.output
    not_an_id = run(server_url, operator, "remove", "banana")
    assert not_an_id.exit_code == 1 and "is not a lock id" in not_an_id.output


def test_the_safety_role_overrides_a_lock_by_device_uuid_from_the_terminal(
    server_url: str, operator: Person, safety_lead: Person, database: Database
) -> None:
    with database.unit_of_work() as s:
        spindle = s.scalars(select(Device.id).where(Device.external_id == "cnc-spindle")).one()
    placed = run(server_url, operator, "place", str(spindle), "--reason", "belt")
    lock_id = LOCK_ID.search(placed.output).group(1)  # type: ignore[union-attr]
    overridden = run(server_url, safety_lead, "remove", lock_id, "--override", "shift ended")
    assert overridden.exit_code == 0, overridden.output
    assert "overrode Olivia Operator's lock on cnc-spindle" in overridden.output
    assert "is notified" in overridden.output
