"""Fixtures for API tests: a wired app on the real database, and people with tokens."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.slicer.prusaslicer import PrusaSlicer
from kittylab.api.app import create_app
from kittylab.config import Settings
from kittylab.people import identity
from tests.integration.seaweedfs import SeaweedFS

if TYPE_CHECKING:
    from tests.integration.print_lab import PrintLab


@dataclass(frozen=True)
class Person:
    user_id: UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def container(
    database: Database, database_url: str, settings: Settings
) -> Iterator[bootstrap.Container]:
    with bootstrap.application(settings, database_url) as c:
        c.database.dispose()
        c.database = database  # share the test's pool; the app builds its own otherwise
        yield c


@pytest.fixture
def client(container: bootstrap.Container) -> Iterator[TestClient]:
    # From loopback, as the quick start's clients: a request from outside the lab's trusted
    # networks may only read (tests/integration/test_trusted_networks.py).
    with TestClient(
        create_app(container), raise_server_exceptions=False, client=("127.0.0.1", 50000)
    ) as c:
        yield c


def _person(database: Database, username: str, roles: list[str]) -> Person:
    with database.unit_of_work() as session:
        user = identity.create_user(
            session, username=username, display_name=username.title(), roles=roles
        )
        issued = identity.issue_token(session, user)
    return Person(user.id, issued.token)


@pytest.fixture
def admin(database: Database) -> Person:
    return _person(database, "ada", ["admin"])


@pytest.fixture
def operator(database: Database) -> Person:
    return _person(database, "olivia", ["operator"])


@pytest.fixture
def safety_lead(database: Database) -> Person:
    return _person(database, "sam", ["safety"])


@pytest.fixture
def lab(
    container: bootstrap.Container,
    client: TestClient,
    operator: Person,
    database: Database,
    database_url: str,
    demo_lab_path: Path,
) -> PrintLab:
    """The demo lab applied to the emptied test database, for the print job tests (see
    tests/integration/print_lab.py); a module with a lab of its own overrides it. Other
    people a test needs come before it in the test's arguments: the manifest then updates
    them instead of clashing with them."""
    from tests.integration.print_lab import PrintLab, apply_demo_lab

    devices = apply_demo_lab(container, database, demo_lab_path)
    return PrintLab(container, client, operator, database, database_url, devices)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server on 127.0.0.1 that must never see a connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder any user may use (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kittylab-sandbox-test-"))
    path.chmod(0o777)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.fixture(scope="session")
def slicer_binary() -> str:
    """The real ``prusa-slicer``; fails the test when it is not installed."""
    found = shutil.which("prusa-slicer")
    if found is None:
        pytest.fail("prusa-slicer is not installed: run scripts/install-system-deps.sh")
    return found


@pytest.fixture
def slicer(slicer_binary: str, tmp_path: Path) -> PrusaSlicer:
    """The slicer as the application builds it from default settings."""
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    made = bootstrap.slicer(settings)
    assert isinstance(made, PrusaSlicer)
    return made


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real SeaweedFS S3 server for the session (see tests/integration/seaweedfs.py);
    fails the test when it cannot start."""
    with SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
