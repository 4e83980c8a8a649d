"""The migrations build exactly the schema the models describe, and can be undone."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from kittylab.adapters.db import migrate
from kittylab.adapters.db.engine import Database
from kittylab.adapters.db.tables import Base


def test_migrated_schema_matches_the_models(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = [
            diff
            for diff in compare_metadata(context, Base.metadata)
            # procrastinate's tables and the migration bookkeeping are not models
            if "procrastinate" not in str(diff) and "kittylab_component_versions" not in str(diff)
        ]
    assert differences == []


def test_every_relationship_has_a_foreign_key_and_an_index(database: Database) -> None:
    inspector = inspect(database.engine)
    fks = {
        (fk["constrained_columns"][0], fk["referred_table"])
        for fk in inspector.get_foreign_keys("fabrication_jobs")
    }
    assert ("origin_command_id", "device_commands") in fks
    indexed = {c for ix in inspector.get_indexes("fabrication_jobs") for c in ix["column_names"]}
    assert {"device_id", "cad_artifact_id", "origin_command_id", "requested_by"} <= indexed


def test_database_is_at_the_newest_migration(database: Database) -> None:
    assert migrate.is_current(database.engine)


def test_migrations_downgrade_to_nothing_and_back(database: Database) -> None:
    with database.engine.begin() as conn:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        from alembic import command

        command.downgrade(cfg, "base")
        leftover = inspect(conn).get_table_names()
        assert leftover == ["alembic_version"]
        command.upgrade(cfg, "head")
    # Every table and type was dropped and made again under new ids: pooled connections
    # hold prepared statements for the old ones ("cached plan must not change result type"
    # in whichever test draws them next), so the pool starts afresh.
    database.engine.dispose()
    assert migrate.is_current(database.engine)
