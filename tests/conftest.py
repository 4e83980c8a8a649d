"""Shared fixtures. Database tests run against the embedded PostgreSQL, and also against an
external server when KITTYLAB_TEST_DATABASE_URL is set (CI sets it when 127.0.0.1:5432
answers). A backend that cannot start fails the run; it is never skipped."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kittylab.adapters.db import migrate
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.adapters.db.engine import Database, libpq_url, make_engine
from kittylab.adapters.db.tables import Base

EXTERNAL_ENV = "KITTYLAB_TEST_DATABASE_URL"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every test leaves the root logger as it found it. The CLI configures logging onto
    the runner's captured stream, which is closed when its test ends: a later log line
    sent there prints "--- Logging error ---" into whatever the next test captures."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _backends() -> list[str]:
    return ["embedded", "external"] if os.environ.get(EXTERNAL_ENV) else ["embedded"]


@pytest.fixture(scope="session", params=_backends())
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database on one backend; the URL of it."""
    if request.param == "embedded":
        server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"))
        url = server.start()
        try:
            _migrate(url)
            yield url
        finally:
            server.stop()
        return
    admin = libpq_url(os.environ[EXTERNAL_ENV])
    name = f"kittylab_test_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _session_database(database_url: str) -> Iterator[Database]:
    database = Database(make_engine(database_url, pool_size=5))
    yield database
    database.dispose()


@pytest.fixture
def database(_session_database: Database) -> Database:
    """The session's database, emptied before each test."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with _session_database.engine.begin() as conn:
        # The audit log refuses TRUNCATE through a trigger; replica mode (superuser, this
        # transaction only) skips triggers, as a test reset may.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text(f"TRUNCATE {tables}, procrastinate_jobs, procrastinate_periodic_defers CASCADE")
        )
    return _session_database


@pytest.fixture
def demo_lab_path() -> Path:
    return Path(__file__).resolve().parents[1] / "examples" / "lab.yaml"
