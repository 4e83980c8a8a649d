"""Schema migrations: ``upgrade`` to head, and the check ``/readyz`` uses."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        # One migrator at a time when several processes start together.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7160001)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@cache
def head_revision() -> str | None:
    """The newest revision shipped with this code (read from disk once per process)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    with engine.connect() as conn:
        return current_revision(conn) == head_revision()


def autogenerate(engine: Engine, message: str) -> None:
    """Developer tool: write a new revision from the difference between tables.py and the
    database (used by ``kittylab db revision``)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
